//! What re6st reads from its X.509 certificates: the network prefix in the
//! CA's serial, the node prefix in the CN, the subject serialNumber, and
//! validity dates.

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::nid::Nid;
use openssl::x509::X509Ref;
use thiserror::Error;

use crate::prefix::{Prefix, PrefixError};

#[derive(Debug, Error)]
pub enum CertError {
    #[error("OpenSSL: {0}")]
    Ssl(#[from] openssl::error::ErrorStack),
    #[error("certificate has no {0} in its subject")]
    MissingField(&'static str),
    #[error("certificate subject field {0} is not valid: {1}")]
    BadField(&'static str, String),
    #[error("{0}")]
    Prefix(#[from] PrefixError),
}

/// The network prefix encoded in the CA certificate's serial number.
pub fn network_from_ca(ca: &X509Ref) -> Result<Prefix, CertError> {
    let serial = ca.serial_number().to_bn()?.to_vec();
    Ok(Prefix::from_ca_serial(&serial)?)
}

fn subject_text(cert: &X509Ref, nid: Nid, name: &'static str) -> Result<String, CertError> {
    let entry = cert
        .subject_name()
        .entries_by_nid(nid)
        .next()
        .ok_or(CertError::MissingField(name))?;
    let s = entry
        .data()
        .to_string()
        .map_err(|_| CertError::BadField(name, "not text".into()))?;
    Ok(s)
}

/// The subject CN, `N/LEN` for node certificates.
pub fn common_name(cert: &X509Ref) -> Result<String, CertError> {
    subject_text(cert, Nid::COMMONNAME, "CN")
}

/// The node prefix written in a node certificate's CN.
pub fn node_prefix(cert: &X509Ref) -> Result<Prefix, CertError> {
    Ok(Prefix::from_subnet(&common_name(cert)?)?)
}

/// The subject serialNumber (used by the registry for IPv4 allocation).
pub fn subject_serial(cert: &X509Ref) -> Result<u64, CertError> {
    let s = subject_text(cert, Nid::SERIALNUMBER, "serialNumber")?;
    s.parse()
        .map_err(|_| CertError::BadField("serialNumber", s.clone()))
}

/// The subject emailAddress, when present.
pub fn email(cert: &X509Ref) -> Option<String> {
    subject_text(cert, Nid::PKCS9_EMAILADDRESS, "emailAddress").ok()
}

/// Seconds since the Unix epoch of an ASN.1 time.
pub fn asn1_to_unix(t: &Asn1TimeRef) -> Result<i64, CertError> {
    let epoch = Asn1Time::from_unix(0)?;
    let d = epoch.diff(t)?;
    Ok(i64::from(d.days) * 86400 + i64::from(d.secs))
}

pub fn not_before(cert: &X509Ref) -> Result<i64, CertError> {
    asn1_to_unix(cert.not_before())
}

pub fn not_after(cert: &X509Ref) -> Result<i64, CertError> {
    asn1_to_unix(cert.not_after())
}

/// The certificate's serial number as an integer (CRLs list these).
pub fn serial(cert: &X509Ref) -> Result<u128, CertError> {
    let v = cert.serial_number().to_bn()?.to_vec();
    if v.len() > 16 {
        return Err(CertError::BadField("serial", "longer than 128 bits".into()));
    }
    Ok(v.iter().fold(0u128, |acc, &b| acc << 8 | u128::from(b)))
}
