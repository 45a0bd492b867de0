//! Certificate issuance with upstream's conventions: the subject is the
//! requester's, with `serialNumber` (a small number unique among live
//! certificates, used for IPv4 allocation) and then `CN` (the node prefix
//! as `N/LEN`) put last; the issuer is the CA's subject; the serial comes
//! from a counter; X.509 v1, signed with SHA-512.

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::x509::{X509Builder, X509Name, X509NameRef, X509Req, X509};
use re6st_proto::cert as pcert;
use re6st_proto::prefix::Prefix;
use thiserror::Error;

/// Validity of a newly issued certificate (upstream's `cert_duration`).
pub const CERT_DURATION: i64 = 365 * 86400;

/// A certificate is renewed when it expires within this period.
pub const RENEW_PERIOD: i64 = 30 * 86400;

#[derive(Debug, Error)]
pub enum CertsError {
    #[error("OpenSSL: {0}")]
    Ssl(#[from] openssl::error::ErrorStack),
    #[error("invalid certificate request: {0}")]
    BadRequest(&'static str),
    #[error("CA: {0}")]
    Ca(String),
    #[error("{0}")]
    Cert(#[from] pcert::CertError),
}

/// The network's certificate authority.
pub struct Ca {
    pub cert: X509,
    pub key: PKey<Private>,
    /// The network prefix, encoded in the CA's serial number.
    pub network: Prefix,
}

impl Ca {
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Ca, CertsError> {
        let cert = X509::from_pem(cert_pem)?;
        let key = PKey::private_key_from_pem(key_pem)?;
        if !cert.public_key()?.public_eq(&key) {
            return Err(CertsError::Ca(
                "the private key does not match the CA certificate".into(),
            ));
        }
        if key.id() != Id::RSA {
            return Err(CertsError::Ca("the CA key must be RSA".into()));
        }
        let network = pcert::network_from_ca(&cert)?;
        if network.len() >= 128 {
            return Err(CertsError::Ca(
                "the network prefix leaves no host bits".into(),
            ));
        }
        Ok(Ca { cert, key, network })
    }

    /// The CA's e-mail address (sender of token mails), if any.
    pub fn email(&self) -> Option<String> {
        pcert::email(&self.cert)
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> Result<Vec<u8>, CertsError> {
        Ok(self.cert.to_pem()?)
    }
}

/// A parsed certificate request: the subject and key to certify.
pub struct Request {
    pub subject: X509Name,
    pub key: PKey<Public>,
}

/// Parses a PEM certificate request and checks its self-signature and
/// that its key is RSA (the protocol encrypts to it).
pub fn parse_request(pem: &[u8]) -> Result<Request, CertsError> {
    let req = X509Req::from_pem(pem).map_err(|_| CertsError::BadRequest("not a PEM request"))?;
    let key = req
        .public_key()
        .map_err(|_| CertsError::BadRequest("unreadable public key"))?;
    if key.id() != Id::RSA {
        return Err(CertsError::BadRequest("the key is not RSA"));
    }
    if !req.verify(&key).unwrap_or(false) {
        return Err(CertsError::BadRequest("bad signature"));
    }
    Ok(Request {
        subject: copy_name(req.subject_name(), &[])?,
        key,
    })
}

/// A copy of `name` without the entries whose NID is in `skip`.
fn copy_name(name: &X509NameRef, skip: &[Nid]) -> Result<X509Name, CertsError> {
    let mut b = X509Name::builder()?;
    for e in name.entries() {
        if !skip.contains(&e.object().nid()) {
            b.append_entry(e)?;
        }
    }
    Ok(b.build())
}

/// What varies between two issued certificates.
pub struct Issue<'a> {
    pub subject: &'a X509NameRef,
    pub key: &'a PKeyRef<Public>,
    pub prefix: &'a Prefix,
    /// Replaces the subject's serialNumber when given.
    pub subject_serial: Option<u64>,
    pub serial: u64,
    pub not_before: i64,
    pub not_after: i64,
}

/// Builds and signs a node certificate.
pub fn issue(ca: &Ca, i: &Issue<'_>) -> Result<X509, CertsError> {
    finish(ca, draft(ca, i.key)?, i)
}

/// A certificate's parts that do not depend on the prefix or serials:
/// made before the database is locked (setting the public key is one of
/// the slowest steps with OpenSSL 3).
pub struct Draft(X509Builder);

pub fn draft(ca: &Ca, key: &PKeyRef<Public>) -> Result<Draft, CertsError> {
    let mut b = X509::builder()?;
    b.set_issuer_name(ca.cert.subject_name())?;
    b.set_pubkey(key)?;
    Ok(Draft(b))
}

/// Completes and signs a [`draft`] of `i.key`.
pub fn finish(ca: &Ca, draft: Draft, i: &Issue<'_>) -> Result<X509, CertsError> {
    let mut skip = vec![Nid::COMMONNAME];
    if i.subject_serial.is_some() {
        skip.push(Nid::SERIALNUMBER);
    }
    let mut subject = X509Name::builder()?;
    for e in i.subject.entries() {
        if !skip.contains(&e.object().nid()) {
            subject.append_entry(e)?;
        }
    }
    if let Some(s) = i.subject_serial {
        subject.append_entry_by_nid(Nid::SERIALNUMBER, &s.to_string())?;
    }
    subject.append_entry_by_nid(Nid::COMMONNAME, &i.prefix.to_subnet())?;
    let subject = subject.build();

    let mut b = draft.0;
    b.set_not_before(Asn1Time::from_unix(i.not_before as _)?.as_ref())?;
    b.set_not_after(Asn1Time::from_unix(i.not_after as _)?.as_ref())?;
    b.set_subject_name(&subject)?;
    let serial: Asn1Integer = BigNum::from_dec_str(&i.serial.to_string())?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.sign(&ca.key, MessageDigest::sha512())?;
    Ok(b.build())
}

/// The smallest subject serial not used by any of `used`.
pub fn smallest_unused(used: impl IntoIterator<Item = u64>) -> u64 {
    let mut v: Vec<u64> = used.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    v.iter()
        .enumerate()
        .find(|(i, s)| *i as u64 != **s)
        .map_or(v.len() as u64, |(i, _)| i as u64)
}

/// What renewCertificate should do with a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Still valid for long enough: send it back as is.
    Keep,
    /// Issue a new certificate valid for [`CERT_DURATION`].
    Extend,
    /// Revoked: issue a new serial with the same expiry.
    Reissue { not_after: i64 },
}

pub fn renewal(not_after: i64, revoked: bool, now: i64) -> Renewal {
    if not_after - RENEW_PERIOD < now {
        Renewal::Extend
    } else if revoked {
        Renewal::Reissue { not_after }
    } else {
        Renewal::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::x509::X509ReqBuilder;
    use re6st_testkit::{rsa_key, Pki};

    fn ca() -> Ca {
        let pki = Pki::new("2001:db8::/32");
        Ca::from_pem(
            &pki.ca.to_pem().unwrap(),
            &pki.ca_key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap()
    }

    pub fn csr(key: &PKey<Private>, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut n = X509Name::builder().unwrap();
        for (k, v) in fields {
            n.append_entry_by_text(k, v).unwrap();
        }
        let mut r = X509ReqBuilder::new().unwrap();
        r.set_subject_name(&n.build()).unwrap();
        r.set_pubkey(key).unwrap();
        r.sign(key, MessageDigest::sha512()).unwrap();
        r.build().to_pem().unwrap()
    }

    #[test]
    fn issued_certificate_follows_upstream_conventions() {
        let ca = ca();
        assert_eq!(ca.network.to_string().len(), 32);
        let key = rsa_key(1024);
        let req = parse_request(&csr(
            &key,
            &[("O", "acme"), ("CN", "evil"), ("serialNumber", "99")],
        ))
        .unwrap();
        let prefix: Prefix = "0000000000000001".parse().unwrap();
        let cert = issue(
            &ca,
            &Issue {
                subject: &req.subject,
                key: &req.key,
                prefix: &prefix,
                subject_serial: Some(3),
                serial: 42,
                not_before: 1_700_000_000,
                not_after: 1_700_000_000 + CERT_DURATION,
            },
        )
        .unwrap();
        let fields: Vec<(String, String)> = cert
            .subject_name()
            .entries()
            .map(|e| {
                (
                    e.object().nid().short_name().unwrap().to_owned(),
                    e.data().to_string().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            fields,
            [("O", "acme"), ("serialNumber", "3"), ("CN", "1/16")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(pcert::serial(&cert).unwrap(), 42);
        assert_eq!(pcert::not_before(&cert).unwrap(), 1_700_000_000);
        assert_eq!(
            pcert::not_after(&cert).unwrap(),
            1_700_000_000 + CERT_DURATION
        );
        assert_eq!(
            cert.issuer_name().to_der().unwrap(),
            ca.cert.subject_name().to_der().unwrap()
        );
        assert_eq!(
            cert.signature_algorithm().object().nid(),
            Nid::SHA512WITHRSAENCRYPTION
        );
        assert!(cert.verify(&ca.cert.public_key().unwrap()).unwrap());
    }

    #[test]
    fn bad_requests_are_rejected() {
        assert!(parse_request(b"garbage").is_err());
        let key = rsa_key(1024);
        let mut pem = csr(&key, &[("O", "x")]);
        // Corrupt the signature (last bytes before the footer).
        let footer = pem.len() - "\n-----END CERTIFICATE REQUEST-----\n".len();
        pem[footer - 3] = if pem[footer - 3] == b'A' { b'B' } else { b'A' };
        assert!(parse_request(&pem).is_err());
    }

    #[test]
    fn subject_serials() {
        assert_eq!(smallest_unused([]), 0);
        assert_eq!(smallest_unused([0, 1, 2]), 3);
        assert_eq!(smallest_unused([1, 2]), 0);
        assert_eq!(smallest_unused([0, 2, 3]), 1);
        assert_eq!(smallest_unused([0, 0, 1, 3]), 2);
    }

    #[test]
    fn renewal_rules() {
        let now = 1_000_000_000;
        assert_eq!(renewal(now + RENEW_PERIOD + 10, false, now), Renewal::Keep);
        assert_eq!(
            renewal(now + RENEW_PERIOD - 10, false, now),
            Renewal::Extend
        );
        assert_eq!(renewal(now - 10, true, now), Renewal::Extend);
        assert_eq!(
            renewal(now + 2 * RENEW_PERIOD, true, now),
            Renewal::Reissue {
                not_after: now + 2 * RENEW_PERIOD
            }
        );
    }
}
