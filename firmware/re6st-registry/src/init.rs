//! `--init-network`: everything a new network needs before its registry
//! starts: a CA whose serial number encodes the network prefix, its key,
//! and Diffie-Hellman parameters for OpenVPN.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::Ipv6Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509Name, X509};
use re6st_proto::prefix::Prefix;
use thiserror::Error;

/// RFC 7919 group ffdhe2048: well-known, safe DH parameters, which spares
/// a router minutes of `openssl dhparam`.
pub const FFDHE2048_PEM: &str = "-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
";

/// Validity of the CA certificate.
const CA_DAYS: u32 = 3650;

#[derive(Debug, Error)]
pub enum InitError {
    #[error("invalid network {0:?}: expected IPV6/LEN with LEN below 128")]
    BadNetwork(String),
    #[error("{0} already exists: not overwriting it")]
    Exists(PathBuf),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("OpenSSL: {0}")]
    Ssl(#[from] openssl::error::ErrorStack),
}

/// What `--init-network` wrote.
pub struct Created {
    pub ca: PathBuf,
    pub key: PathBuf,
    pub dh: PathBuf,
    /// SHA-1 fingerprint of the CA, for `re6st-conf --fingerprint sha1:...`.
    pub fingerprint: String,
}

pub fn parse_network(s: &str) -> Result<Prefix, InitError> {
    let bad = || InitError::BadNetwork(s.to_owned());
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv6Addr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len >= 128 {
        return Err(bad());
    }
    let p = Prefix::from_ipv6(ip, len).map_err(|_| bad())?;
    // Host bits must be zero: the address is the network's.
    if p.to_ipv6() != ip {
        return Err(bad());
    }
    Ok(p)
}

/// A self-signed CA for `network`.
pub fn make_ca(
    network: &Prefix,
    email: Option<&str>,
    key: &PKey<openssl::pkey::Private>,
) -> Result<X509, InitError> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_text("O", "re6st")?;
    name.append_entry_by_text(
        "CN",
        &format!("re6st CA {}/{}", network.to_ipv6(), network.len()),
    )?;
    if let Some(e) = email {
        name.append_entry_by_text("emailAddress", e)?;
    }
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = BigNum::from_slice(&network.to_ca_serial())?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(CA_DAYS)?.as_ref())?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(key, MessageDigest::sha512())?;
    Ok(b.build())
}

fn create(path: &Path, data: &[u8], mode: u32) -> Result<(), InitError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| InitError::Io(path.to_owned(), e))?;
    f.write_all(data)
        .map_err(|e| InitError::Io(path.to_owned(), e))
}

/// Writes `ca.crt`, `ca.key` and `dh.pem` into `dir` (never overwriting).
pub fn init_network(network: &str, dir: &Path, email: Option<&str>) -> Result<Created, InitError> {
    let network = parse_network(network)?;
    std::fs::create_dir_all(dir).map_err(|e| InitError::Io(dir.to_owned(), e))?;
    let ca = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    let dh = dir.join("dh.pem");
    for p in [&ca, &key_path, &dh] {
        if p.exists() {
            return Err(InitError::Exists(p.clone()));
        }
    }
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let cert = make_ca(&network, email, &key)?;
    create(&key_path, &key.private_key_to_pem_pkcs8()?, 0o600)?;
    create(&ca, &cert.to_pem()?, 0o644)?;
    create(&dh, FFDHE2048_PEM.as_bytes(), 0o644)?;
    let fingerprint = hex_string(&cert.digest(MessageDigest::sha1())?);
    Ok(Created {
        ca,
        key: key_path,
        dh,
        fingerprint,
    })
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Ca;

    #[test]
    fn networks() {
        assert_eq!(parse_network("2001:db8::/32").unwrap().len(), 32);
        assert!(parse_network("2001:db8::1/32").is_err());
        assert!(parse_network("2001:db8::/128").is_err());
        assert!(parse_network("2001:db8::").is_err());
        assert!(parse_network("10.0.0.0/8").is_err());
    }

    #[test]
    fn creates_a_usable_network() {
        let dir = std::env::temp_dir().join(format!("re6st-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = init_network("2001:db8:42::/48", &dir, Some("ca@example.com")).unwrap();
        let ca = Ca::from_pem(
            &std::fs::read(&c.ca).unwrap(),
            &std::fs::read(&c.key).unwrap(),
        )
        .unwrap();
        assert_eq!(ca.network, parse_network("2001:db8:42::/48").unwrap());
        assert_eq!(ca.email().as_deref(), Some("ca@example.com"));
        assert!(openssl::dh::Dh::params_from_pem(&std::fs::read(&c.dh).unwrap()).is_ok());
        assert_eq!(c.fingerprint.len(), 40);
        // Never overwrites.
        assert!(matches!(
            init_network("2001:db8:42::/48", &dir, None),
            Err(InitError::Exists(_))
        ));
        // Upstream reads the same network from it.
        let out = re6st_testkit::run_upstream(
            "import sys\nfrom re6st import x509\nfrom OpenSSL import crypto\n\
             ca = crypto.load_certificate(crypto.FILETYPE_PEM, open(sys.argv[1],'rb').read())\n\
             print(x509.networkFromCa(ca), end='')",
            &[c.ca.to_str().unwrap()],
            b"",
        );
        assert_eq!(String::from_utf8(out).unwrap(), ca.network.to_string());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
