//! The simulated network's certificates: a CA, one certificate per node
//! (its prefix as CN, as the registry issues them) and the signed network
//! version, so that every node's peer protocol runs its real handshakes.
//!
//! All nodes share one key pair (each certificate still names its own
//! prefix and serial): generating thousands of RSA keys would take
//! minutes. The node key is 1,024 bits to keep the handshakes' cost
//! down (a hello's encrypted secret and signature are then 128 bytes each
//! instead of 256, which the byte counts reflect); the CA's is 2,048 bits
//! like a registry's, so version announcements have their real size.

use std::error::Error;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509Name, X509};
use re6st_proto::peer::Identity;
use re6st_proto::prefix::Prefix;

use crate::ids;

/// The network's prefix: node `i` is `2001:db8:i::/48`.
pub const NETWORK: &str = "2001:db8::/32";

pub struct Pki {
    pub network: Prefix,
    ca: X509,
    ca_key: PKey<Private>,
    node_key: PKey<Private>,
    /// The network version every node runs (signed by the CA).
    pub version: Vec<u8>,
    /// Wall-clock second the certificates' validity starts from.
    valid_from: i64,
}

fn name(cn: &str) -> Result<X509Name, openssl::error::ErrorStack> {
    let mut n = X509Name::builder()?;
    n.append_entry_by_text("O", "re6st-sim")?;
    n.append_entry_by_text("CN", cn)?;
    Ok(n.build())
}

/// Ten years from `from`.
fn validity(from: i64) -> Result<(Asn1Time, Asn1Time), openssl::error::ErrorStack> {
    Ok((
        Asn1Time::from_unix(from)?,
        Asn1Time::from_unix(from + 3650 * 86_400)?,
    ))
}

impl Pki {
    /// Certificates valid from a day before `wall` (the simulation's
    /// start) for ten years.
    pub fn new(wall: i64) -> Result<Pki, Box<dyn Error>> {
        let (addr, len) = NETWORK.split_once('/').expect("ADDR/LEN");
        let network = Prefix::from_ipv6(addr.parse()?, len.parse()?)?;
        let ca_key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let valid_from = wall - 86_400;
        let mut b = X509::builder()?;
        b.set_version(2)?;
        let serial: BigNum = BigNum::from_slice(&network.to_ca_serial())?;
        let serial: Asn1Integer = Asn1Integer::from_bn(&serial)?;
        b.set_serial_number(&serial)?;
        let n = name("re6st-sim CA")?;
        b.set_subject_name(&n)?;
        b.set_issuer_name(&n)?;
        b.set_pubkey(&ca_key)?;
        let (from, to) = validity(valid_from)?;
        b.set_not_before(&from)?;
        b.set_not_after(&to)?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(KeyUsage::new().key_cert_sign().crl_sign().build()?)?;
        b.sign(&ca_key, MessageDigest::sha256())?;
        let ca = b.build();
        let version = re6st_proto::crypto::sign_version(&ca_key, 1)?;
        Ok(Pki {
            network,
            ca,
            ca_key,
            node_key: PKey::from_rsa(Rsa::generate(1024)?)?,
            version,
            valid_from,
        })
    }

    /// Node `i`'s identity: its prefix as CN, serial `i + 1`.
    pub fn identity(&self, i: u32) -> Result<Identity, Box<dyn Error>> {
        let mut b = X509::builder()?;
        b.set_version(2)?;
        let serial: BigNum = BigNum::from_u32(i + 1)?;
        let serial: Asn1Integer = Asn1Integer::from_bn(&serial)?;
        b.set_serial_number(&serial)?;
        let subject: X509Name = name(&ids::prefix(i).to_subnet())?;
        b.set_subject_name(&subject)?;
        b.set_issuer_name(self.ca.subject_name())?;
        b.set_pubkey(&self.node_key)?;
        let (from, to) = validity(self.valid_from)?;
        b.set_not_before(&from)?;
        b.set_not_after(&to)?;
        b.sign(&self.ca_key, MessageDigest::sha256())?;
        Ok(Identity::new(
            self.ca.clone(),
            b.build(),
            self.node_key.clone(),
        )?)
    }
}
