#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use re6st_proto::netconfig::{self, NetworkConfig};
use re6st_proto::rpc;

fn key() -> &'static PKey<Private> {
    static KEY: OnceLock<PKey<Private>> = OnceLock::new();
    KEY.get_or_init(|| PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let _ = rpc::decode_header(data);
    // Inflation is bounded; bad JSON, types and ciphertexts are errors.
    let _ = NetworkConfig::decode(data, key());
    if let Ok(map) = serde_json_map(data) {
        let _ = NetworkConfig::from_map(map, key());
    }
});

/// Raw JSON (not compressed) straight into the field decoder.
fn serde_json_map(data: &[u8]) -> Result<netconfig::JsonMap, ()> {
    netconfig::parse_json(data).map_err(|_| ())
}
