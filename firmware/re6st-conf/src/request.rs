//! The provisioning conversation with the registry (unauthenticated RPCs
//! only: `getCa`, `requestToken`, `requestCertificate`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509NameBuilder, X509Req, X509};
use re6st_proto::{cert, prefix};
use re6st_registry_client::call::{self, CallError};
use re6st_registry_client::transport::RegistryUrl;
use thiserror::Error;

use crate::files::{read_optional, write_atomic};

pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "cert.crt";
pub const KEY_FILE: &str = "cert.key";
pub const CONF_FILE: &str = "re6stnet.conf";

/// Subject fields the registry sets itself.
const RESERVED_FIELDS: [&str; 2] = ["CN", "serialNumber"];

#[derive(Debug, Error)]
pub enum ProvisionError {
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("invalid fingerprint {0:?}: {1}")]
    BadFingerprint(String, String),
    #[error(
        "CA fingerprint doesn't match: the registry's CA is {alg}:{got}, --fingerprint \
         says {alg}:{want}. Either the fingerprint is mistyped (ask the registry's operator: \
         `openssl x509 -in ca.crt -outform der | openssl dgst -{alg}` on the registry's host shows it) \
         or this is not the registry you meant (check the URL); nothing was requested"
    )]
    FingerprintMismatch {
        alg: String,
        got: String,
        want: String,
    },
    #[error("the registry sent an invalid {0}: {1}")]
    BadAnswer(&'static str, String),
    #[error("{0} field is reserved")]
    ReservedField(String),
    #[error("invalid subject field {0}={1}: {2}")]
    BadField(String, String, String),
    #[error("--anonymous conflicts with --email/--token")]
    AnonymousConflict,
    #[error("an email address (or --token, or --anonymous) is needed")]
    NoEmail,
    #[error("invalid or expired token")]
    InvalidToken,
    #[error("no token was given")]
    NoToken,
    #[error(
        "the registry could not mail a token to {0} ({1}); it may have kept \
         one for that address: ask its operator for it, then run again with --token TOKEN"
    )]
    TokenNotMailed(String, CallError),
    #[error("{0}: {1}")]
    File(PathBuf, std::io::Error),
    #[error("existing {0} is unreadable: {1}")]
    BadFile(PathBuf, String),
    #[error("the key generation did not finish: {0}")]
    KeyGeneration(String),
    #[error("OpenSSL: {0}")]
    Ssl(#[from] openssl::error::ErrorStack),
}

/// Where the token comes from when none was given: upstream asks on the
/// terminal after `requestToken` mailed it.
pub enum TokenSource<'a> {
    /// `--anonymous`.
    Anonymous,
    /// `--token`.
    Given(String),
    /// `--email`: ask the registry to mail a token, then call the closure
    /// (e.g. a terminal prompt) to obtain it.
    Email(String, &'a mut dyn FnMut() -> Option<String>),
}

pub struct ProvisionRequest<'a> {
    pub registry: String,
    /// `ALG:HEX` of the CA certificate's DER.
    pub fingerprint: Option<String>,
    pub dir: PathBuf,
    /// Extra subject fields (`-r KEY VALUE`).
    pub req: Vec<(String, String)>,
    pub token: TokenSource<'a>,
    /// `CC,CONTINENT` for community assignment.
    pub location: Option<String>,
    pub ca_only: bool,
    pub timeout: Duration,
}

/// What provisioning produced.
#[derive(Debug)]
pub struct Provisioned {
    pub ca: X509,
    pub network: prefix::Prefix,
    /// `None` with `ca_only`.
    pub cert: Option<X509>,
    pub key_generated: bool,
    pub conf_written: bool,
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> ProvisionError + '_ {
    move |e| ProvisionError::File(path.to_owned(), e)
}

/// Parses `ALG:HEX` and checks the digest of `ca`.
pub fn check_fingerprint(ca: &X509, spec: &str) -> Result<(), ProvisionError> {
    let bad = |why: &str| ProvisionError::BadFingerprint(spec.to_owned(), why.to_owned());
    let (alg, hex_digest) = spec
        .split_once(':')
        .ok_or_else(|| bad("expected ALG:HEX"))?;
    let md = MessageDigest::from_name(alg).ok_or_else(|| bad("unknown algorithm"))?;
    let want = hex::decode(hex_digest).map_err(|e| bad(&e.to_string()))?;
    if want.len() != md.size() {
        return Err(bad("wrong size"));
    }
    let got = ca.digest(md)?;
    if got.as_ref() != want.as_slice() {
        return Err(ProvisionError::FingerprintMismatch {
            alg: alg.to_ascii_lowercase(),
            got: hex::encode(got),
            want: hex_digest.to_ascii_lowercase(),
        });
    }
    Ok(())
}

/// Subject fields to request: those of an existing certificate (so a
/// renewal by re-running keeps them) overridden by `extra`.
fn subject_fields(
    existing: Option<&X509>,
    extra: &[(String, String)],
) -> Result<Vec<(String, String)>, ProvisionError> {
    let mut fields: Vec<(String, String)> = Vec::new();
    if let Some(c) = existing {
        for e in c.subject_name().entries() {
            let key = e.object().nid().short_name()?.to_owned();
            if RESERVED_FIELDS.contains(&key.as_str()) {
                continue;
            }
            if let Ok(v) = e.data().to_string() {
                fields.push((key, v));
            }
        }
    }
    for (k, v) in extra {
        if RESERVED_FIELDS.contains(&k.as_str()) {
            return Err(ProvisionError::ReservedField(k.clone()));
        }
        fields.retain(|(key, _)| key != k);
        fields.push((k.clone(), v.clone()));
    }
    fields.retain(|(_, v)| !v.is_empty());
    Ok(fields)
}

fn build_csr(key: &PKey<Private>, fields: &[(String, String)]) -> Result<String, ProvisionError> {
    let mut name = X509NameBuilder::new()?;
    for (k, v) in fields {
        name.append_entry_by_text(k, v)
            .map_err(|e| ProvisionError::BadField(k.clone(), v.clone(), e.to_string()))?;
    }
    let mut req = X509Req::builder()?;
    req.set_subject_name(&name.build())?;
    req.set_pubkey(key)?;
    req.sign(key, MessageDigest::sha512())?;
    Ok(String::from_utf8_lossy(&req.build().to_pem()?).into_owned())
}

fn load_or_generate_key(path: &Path, bits: u32) -> Result<(PKey<Private>, bool), ProvisionError> {
    if let Some(pem) = read_optional(path).map_err(file_err(path))? {
        let key = PKey::private_key_from_pem(&pem)
            .map_err(|e| ProvisionError::BadFile(path.to_owned(), e.to_string()))?;
        return Ok((key, false));
    }
    let key = PKey::from_rsa(Rsa::generate(bits)?)?;
    write_atomic(path, &key.private_key_to_pem_pkcs8()?, 0o600).map_err(file_err(path))?;
    Ok((key, true))
}

/// The sample configuration upstream's re6st-conf writes.
pub fn sample_conf(registry: &str, location: Option<&str>) -> String {
    let country = location
        .map(|l| format!("country {}", l.split(',').next().unwrap_or_default()))
        .unwrap_or_default();
    format!(
        "registry {registry}\nca {CA_FILE}\ncert {CERT_FILE}\nkey {KEY_FILE}\n{country}\n\
         # increase re6stnet verbosity:\n#verbose 3\n\
         # enable OpenVPN logging:\n#ovpnlog\n\
         # uncomment the following 2 lines to increase OpenVPN verbosity:\n#O--verb\n#O3\n"
    )
}

/// Runs the whole provisioning against the registry.
pub async fn provision(req: ProvisionRequest<'_>) -> Result<Provisioned, ProvisionError> {
    let url = RegistryUrl::parse(&req.registry).map_err(CallError::from)?;
    let t = req.timeout;
    let ca_pem = call::unauthenticated(&url, "getCa", &[], t)
        .await?
        .ok_or_else(|| ProvisionError::BadAnswer("CA", "empty answer".into()))?;
    let ca = X509::from_pem(&ca_pem).map_err(|e| ProvisionError::BadAnswer("CA", e.to_string()))?;
    if let Some(fp) = &req.fingerprint {
        check_fingerprint(&ca, fp)?;
    }
    let network =
        cert::network_from_ca(&ca).map_err(|e| ProvisionError::BadAnswer("CA", e.to_string()))?;
    let path = |f: &str| req.dir.join(f);
    let ca_path = path(CA_FILE);
    write_atomic(&ca_path, &ca.to_pem()?, 0o644).map_err(file_err(&ca_path))?;
    if req.ca_only {
        return Ok(Provisioned {
            ca,
            network,
            cert: None,
            key_generated: false,
            conf_written: false,
        });
    }

    let cert_path = path(CERT_FILE);
    let existing = match read_optional(&cert_path).map_err(file_err(&cert_path))? {
        Some(pem) => X509::from_pem(&pem).ok(),
        None => None,
    };
    let fields = subject_fields(existing.as_ref(), &req.req)?;

    let token = match req.token {
        TokenSource::Anonymous => String::new(),
        TokenSource::Given(t) if !t.is_empty() => t,
        TokenSource::Given(_) => return Err(ProvisionError::NoToken),
        TokenSource::Email(email, ask) => {
            if email.is_empty() {
                return Err(ProvisionError::NoEmail);
            }
            match call::unauthenticated(&url, "requestToken", &[("email", &email)], t).await {
                Ok(_) => {}
                // The registry failed to mail it (upstream answers 500
                // then, and keeps the token).
                Err(e @ CallError::Status(_, s)) if s.is_server_error() => {
                    return Err(ProvisionError::TokenNotMailed(email, e))
                }
                Err(e) => return Err(e.into()),
            }
            ask()
                .filter(|t| !t.is_empty())
                .ok_or(ProvisionError::NoToken)?
        }
    };

    let bits = ca.public_key()?.bits();
    let key_path = path(KEY_FILE);
    // RSA key generation takes seconds on a slow router: off the runtime's
    // thread, so that the caller's other tasks keep running (init sets its
    // clock from a registry answer meanwhile).
    let (key, key_generated) =
        tokio::task::spawn_blocking(move || load_or_generate_key(&key_path, bits))
            .await
            .map_err(|e| ProvisionError::KeyGeneration(e.to_string()))??;
    let csr = build_csr(&key, &fields)?;
    let location = req.location.clone().unwrap_or_default();
    let args = [
        ("token", token.as_str()),
        ("req", csr.as_str()),
        ("location", location.as_str()),
        ("ip", ""),
    ];
    let pem = call::unauthenticated(&url, "requestCertificate", &args, t)
        .await?
        .ok_or(ProvisionError::InvalidToken)?;
    let new_cert = X509::from_pem(&pem)
        .map_err(|e| ProvisionError::BadAnswer("certificate", e.to_string()))?;
    let ca_pub = ca.public_key()?;
    if !new_cert.verify(&ca_pub)? {
        return Err(ProvisionError::BadAnswer(
            "certificate",
            "not signed by the CA".into(),
        ));
    }
    if !new_cert.public_key()?.public_eq(&key) {
        return Err(ProvisionError::BadAnswer(
            "certificate",
            "not for our key".into(),
        ));
    }
    cert::node_prefix(&new_cert)
        .map_err(|e| ProvisionError::BadAnswer("certificate", e.to_string()))?;
    write_atomic(&cert_path, &pem, 0o644).map_err(file_err(&cert_path))?;

    let conf_path = path(CONF_FILE);
    let conf_written = std::fs::symlink_metadata(&conf_path).is_err();
    if conf_written {
        let text = sample_conf(&req.registry, req.location.as_deref());
        write_atomic(&conf_path, text.as_bytes(), 0o644).map_err(file_err(&conf_path))?;
    }
    Ok(Provisioned {
        ca,
        network,
        cert: Some(new_cert),
        key_generated,
        conf_written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        let pki = re6st_testkit::Pki::new("2001:db8::/32");
        let sha1 = hex::encode(pki.ca.digest(MessageDigest::sha1()).unwrap());
        check_fingerprint(&pki.ca, &format!("sha1:{sha1}")).unwrap();
        let sha256 = hex::encode(pki.ca.digest(MessageDigest::sha256()).unwrap());
        check_fingerprint(&pki.ca, &format!("sha256:{sha256}")).unwrap();
        let wrong = check_fingerprint(&pki.ca, &format!("sha1:{}", "00".repeat(20)));
        assert!(
            matches!(wrong, Err(ProvisionError::FingerprintMismatch { .. })),
            "{wrong:?}"
        );
        // What it says: both fingerprints, and how to get the right one.
        let text = wrong.unwrap_err().to_string();
        for part in [
            format!("the registry's CA is sha1:{sha1}"),
            format!("--fingerprint says sha1:{}", "00".repeat(20)),
            "openssl x509 -in ca.crt -outform der | openssl dgst -sha1".to_owned(),
        ] {
            assert!(text.contains(&part), "{part:?} not in {text}");
        }
        for bad in ["sha1", "nope:00", "sha1:zz", "sha1:0011"] {
            assert!(
                matches!(
                    check_fingerprint(&pki.ca, bad),
                    Err(ProvisionError::BadFingerprint(..))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn subject_keeps_existing_fields_but_not_reserved_ones() {
        let pki = re6st_testkit::Pki::new("2001:db8::/32");
        let node = pki.node("1/16", 3);
        let f = subject_fields(Some(&node.cert), &[("OU".into(), "lab".into())]).unwrap();
        assert_eq!(
            f,
            vec![
                ("O".into(), "re6st-test".into()),
                ("OU".into(), "lab".into())
            ]
        );
        assert!(matches!(
            subject_fields(None, &[("CN".into(), "x".into())]),
            Err(ProvisionError::ReservedField(_))
        ));
    }
}
