#![no_main]
//! What a node reads from the registry's answers: the `Re6stHMAC` header,
//! the network configuration (zlib + JSON, fields, encrypted keys, signed
//! version), the `hello` answer (secret encrypted for us + the CA's
//! signature), encrypted bootstrap peers and the CA certificate.
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use re6st_proto::netconfig::{self, NetworkConfig};
use re6st_proto::rpc::{self, ClientSession};
use re6st_proto::{cert, crypto};

fn key() -> &'static PKey<Private> {
    static KEY: OnceLock<PKey<Private>> = OnceLock::new();
    KEY.get_or_init(|| PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap())
}

fn pki() -> &'static re6st_testkit::Pki {
    static PKI: OnceLock<re6st_testkit::Pki> = OnceLock::new();
    PKI.get_or_init(|| re6st_testkit::Pki::new("2001:db8::/32"))
}

fuzz_target!(|data: &[u8]| {
    let _ = rpc::decode_header(data);
    // Inflation is bounded; bad JSON, types and ciphertexts are errors.
    if let Ok(c) = NetworkConfig::decode(data, key()) {
        let _ = c.verify_version(&pki().ca);
        if let Some(v4) = c.ipv4 {
            let _ = v4.node_address(u64::from(data.len() as u32));
        }
    }
    if let Ok(map) = serde_json_map(data) {
        let _ = NetworkConfig::from_map(map, key());
    }
    let mut session = ClientSession::default();
    if session.accept_hello(data, &pki().ca, key()).is_err() {
        assert!(session.needs_hello());
    }
    let _ = crypto::decrypt(key(), data);
    if let Ok(ca) = crypto::load_cert(data) {
        let _ = cert::network_from_ca(&ca);
    }
});

/// Raw JSON (not compressed) straight into the field decoder.
fn serde_json_map(data: &[u8]) -> Result<netconfig::JsonMap, ()> {
    netconfig::parse_json(data).map_err(|_| ())
}
