//! The RSA operations re6st uses: PKCS#1 v1.5 encryption to a certificate's
//! key, PKCS#1 v1.5 signatures over SHA-512, SHA-1 fingerprints, and the
//! CA-signed network version.
//!
//! These are pure computations (OpenSSL as a library, no processes).

use openssl::hash::{hash, MessageDigest};
use openssl::pkey::{PKey, PKeyRef, Private, Public};
use openssl::rsa::Padding;
use openssl::sign::{Signer, Verifier};
use openssl::x509::{X509Ref, X509};
use thiserror::Error;

use crate::packint;

#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("OpenSSL: {0}")]
    Ssl(#[from] openssl::error::ErrorStack),
    #[error("key is not RSA")]
    NotRsa,
    #[error("bad signature")]
    BadSignature,
    #[error("invalid network version: {0}")]
    BadVersion(&'static str),
    #[error("{0}")]
    Pack(#[from] packint::PackError),
}

/// SHA-1 over the certificate's DER form (upstream's `fingerprint`).
pub fn fingerprint(cert: &X509Ref) -> Result<[u8; 20], CryptoError> {
    let der = cert.to_der()?;
    sha1(&der)
}

pub fn sha1(data: &[u8]) -> Result<[u8; 20], CryptoError> {
    let d = hash(MessageDigest::sha1(), data)?;
    let mut out = [0u8; 20];
    out.copy_from_slice(&d);
    Ok(out)
}

/// HMAC-SHA1, the MAC of both the peer protocol and the registry session.
pub fn hmac_sha1(key: &[u8], data: &[u8]) -> Result<[u8; 20], CryptoError> {
    let pkey = PKey::hmac(key)?;
    let mut signer = Signer::new(MessageDigest::sha1(), &pkey)?;
    signer.update(data)?;
    let mut out = [0u8; 20];
    out.copy_from_slice(&signer.sign_to_vec()?);
    Ok(out)
}

/// Constant-time equality for MACs.
pub fn mac_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

/// RSA PKCS#1 v1.5 encryption with the public key of `cert`
/// (what upstream does with `openssl rsautl -encrypt -certin`).
pub fn encrypt_for(cert: &X509Ref, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let key = cert.public_key()?;
    encrypt_with(&key, data)
}

pub fn encrypt_with(key: &PKeyRef<Public>, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let rsa = key.rsa().map_err(|_| CryptoError::NotRsa)?;
    let mut out = vec![0u8; rsa.size() as usize];
    let n = rsa.public_encrypt(data, &mut out, Padding::PKCS1)?;
    out.truncate(n);
    Ok(out)
}

/// RSA PKCS#1 v1.5 decryption with our private key.
pub fn decrypt(key: &PKeyRef<Private>, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let rsa = key.rsa().map_err(|_| CryptoError::NotRsa)?;
    let mut out = vec![0u8; rsa.size() as usize];
    let n = rsa.private_decrypt(data, &mut out, Padding::PKCS1)?;
    out.truncate(n);
    Ok(out)
}

/// PKCS#1 v1.5 signature over SHA-512.
pub fn sign(key: &PKeyRef<Private>, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut signer = Signer::new(MessageDigest::sha512(), key)?;
    signer.update(data)?;
    Ok(signer.sign_to_vec()?)
}

/// Checks a PKCS#1 v1.5 SHA-512 signature made by the key of `cert`.
pub fn verify(cert: &X509Ref, signature: &[u8], data: &[u8]) -> Result<(), CryptoError> {
    let key = cert.public_key()?;
    verify_with(&key, signature, data)
}

pub fn verify_with(
    key: &PKeyRef<Public>,
    signature: &[u8],
    data: &[u8],
) -> Result<(), CryptoError> {
    let mut verifier = Verifier::new(MessageDigest::sha512(), key)?;
    verifier.update(data)?;
    // OpenSSL reports a malformed signature as an error, a wrong one as false.
    match verifier.verify(signature) {
        Ok(true) => Ok(()),
        _ => Err(CryptoError::BadSignature),
    }
}

/// The network version blob: packed version number then the CA's signature
/// of those bytes.
pub fn sign_version(ca_key: &PKeyRef<Private>, version: u64) -> Result<Vec<u8>, CryptoError> {
    let mut blob = packint::pack(version)?;
    let signature = sign(ca_key, &blob)?;
    blob.extend_from_slice(&signature);
    Ok(blob)
}

/// The version number of a version blob, without checking its signature.
/// An empty blob (never configured) is version 0, as upstream's `b'\0'`.
pub fn version_number(blob: &[u8]) -> Result<u64, CryptoError> {
    if blob.is_empty() {
        return Ok(0);
    }
    Ok(packint::unpack(blob)?.0)
}

/// Checks the CA's signature on a version blob; returns the version number.
pub fn verify_version(ca: &X509Ref, blob: &[u8]) -> Result<u64, CryptoError> {
    let (version, n) =
        packint::unpack(blob).map_err(|_| CryptoError::BadVersion("truncated number"))?;
    if blob.len() == n {
        return Err(CryptoError::BadVersion("missing signature"));
    }
    verify(ca, &blob[n..], &blob[..n])
        .map_err(|_| CryptoError::BadVersion("signature does not match the CA"))?;
    Ok(version)
}

/// Parses a PEM certificate.
pub fn load_cert(pem: &[u8]) -> Result<X509, CryptoError> {
    Ok(X509::from_pem(pem)?)
}

/// Parses a PEM private key (PKCS#1 or PKCS#8).
pub fn load_key(pem: &[u8]) -> Result<PKey<Private>, CryptoError> {
    Ok(PKey::private_key_from_pem(pem)?)
}
