//! Shared test fixtures.
//!
//! * [`Pki`]: a throw-away CA for a given network and node certificates
//!   shaped like the registry's (CN `N/LEN`, subject serialNumber).
//! * [`upstream_python`]: the Python interpreter of the virtualenv where
//!   `make deps` installed upstream re6stnet 0.642, used as a test oracle.
//!   Cross-check tests fail (never skip) when it is missing.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use openssl::asn1::{Asn1Integer, Asn1Time, Asn1TimeRef};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509Name, X509};
use re6st_proto::prefix::Prefix;

pub mod mmdb;
pub mod nat;
pub mod netns;
pub mod overlay;
pub mod upstream_registry;

/// Path of the workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The Python interpreter that has upstream re6stnet installed
/// (`$RE6ST_UPSTREAM_PYTHON`, else `.venv/bin/python` in the workspace).
pub fn upstream_python() -> PathBuf {
    let p = std::env::var_os("RE6ST_UPSTREAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "upstream re6stnet oracle missing: {} does not exist; run `make deps`",
        p.display()
    );
    p
}

/// Runs a Python script with upstream re6stnet importable, feeding `stdin`;
/// returns stdout. Panics with stderr when the script fails.
pub fn run_upstream(script: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(upstream_python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn upstream python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin)
        .expect("write to upstream python");
    let out = child.wait_with_output().expect("upstream python");
    assert!(
        out.status.success(),
        "upstream python failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A throw-away certificate authority for one re6st network.
pub struct Pki {
    pub network: Prefix,
    pub ca: X509,
    pub ca_key: PKey<Private>,
}

/// A node's certificate and key.
pub struct NodeId {
    pub prefix: Prefix,
    pub cert: X509,
    pub key: PKey<Private>,
}

impl NodeId {
    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap()
    }
    pub fn key_pem(&self) -> Vec<u8> {
        self.key.private_key_to_pem_pkcs8().unwrap()
    }
}

pub fn rsa_key(bits: u32) -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
}

fn name(cn: &str, serial_number: Option<u64>) -> X509Name {
    let mut n = X509Name::builder().unwrap();
    n.append_entry_by_text("O", "re6st-test").unwrap();
    if let Some(s) = serial_number {
        n.append_entry_by_text("serialNumber", &s.to_string())
            .unwrap();
    }
    n.append_entry_by_text("CN", cn).unwrap();
    n.build()
}

impl Pki {
    /// A CA whose serial number encodes `network` (e.g. `2001:db8::/32`).
    pub fn new(network: &str) -> Pki {
        let (addr, len) = network.split_once('/').expect("ADDR/LEN");
        let network = Prefix::from_ipv6(addr.parse().unwrap(), len.parse().unwrap()).unwrap();
        let ca_key = rsa_key(2048);
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let serial = BigNum::from_slice(&network.to_ca_serial()).unwrap();
        b.set_serial_number(&Asn1Integer::from_bn(&serial).unwrap())
            .unwrap();
        let n = name("re6st test CA", None);
        b.set_subject_name(&n).unwrap();
        b.set_issuer_name(&n).unwrap();
        b.set_pubkey(&ca_key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(3650).unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(KeyUsage::new().key_cert_sign().crl_sign().build().unwrap())
            .unwrap();
        b.sign(&ca_key, MessageDigest::sha512()).unwrap();
        Pki {
            network,
            ca: b.build(),
            ca_key,
        }
    }

    /// A node certificate for the node prefix `subnet` (`N/LEN`).
    pub fn node(&self, subnet: &str, serial: u32) -> NodeId {
        let end = Asn1Time::days_from_now(365).unwrap();
        self.sign(subnet, serial, rsa_key(2048), &end)
    }

    /// A node certificate for `subnet` with a given key (thousands of
    /// certificates without generating thousands of keys).
    pub fn node_with_key(&self, subnet: &str, serial: u32, key: &PKey<Private>) -> NodeId {
        let end = Asn1Time::days_from_now(365).unwrap();
        self.sign(subnet, serial, key.clone(), &end)
    }

    /// The registry's reissue of a revoked certificate: same key, prefix
    /// and end of validity, another serial.
    pub fn reissue(&self, id: &NodeId, serial: u32) -> NodeId {
        self.sign(
            &id.prefix.to_subnet(),
            serial,
            id.key.clone(),
            id.cert.not_after(),
        )
    }

    fn sign(
        &self,
        subnet: &str,
        serial: u32,
        key: PKey<Private>,
        not_after: &Asn1TimeRef,
    ) -> NodeId {
        let prefix = Prefix::from_subnet(subnet).unwrap();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&Asn1Integer::from_bn(&BigNum::from_u32(serial).unwrap()).unwrap())
            .unwrap();
        b.set_subject_name(&name(subnet, Some(u64::from(serial))))
            .unwrap();
        b.set_issuer_name(self.ca.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(not_after).unwrap();
        b.sign(&self.ca_key, MessageDigest::sha512()).unwrap();
        NodeId {
            prefix,
            cert: b.build(),
            key,
        }
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        self.ca.to_pem().unwrap()
    }
    pub fn ca_key_pem(&self) -> Vec<u8> {
        self.ca_key.private_key_to_pem_pkcs8().unwrap()
    }
}

/// Writes `data` to a fresh temporary file and returns its path.
pub fn temp_file(tag: &str, data: &[u8]) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "re6st-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, data).unwrap();
    path
}
