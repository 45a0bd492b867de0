//! The network configuration the registry hands to nodes
//! (`getNetworkConfig`): zlib-compressed JSON, the names of base64-encoded
//! fields listed under the key `""`, and the babel HMAC keys RSA-encrypted
//! for the requesting node.
//!
//! # Server side (the registry)
//!
//! [`NetworkConfig::encode_for`] builds the blob for one node. The JSON text
//! ([`NetworkConfig::registry_json`]) is byte for byte what upstream's
//! registry writes for the same values (key order, `json.dumps` spacing and
//! escapes); only the deflate stream may differ from C zlib's, which any
//! zlib reader accepts. [`NetworkConfig::last_config_text`] is upstream's
//! `last_config` text, whose change bumps the network version.
//!
//! ```text
//! {"babel_default": "...", "crl": [3, 17], "protocol": 10, "registry_prefix": "0101",
//!  ["ipv4": "10.42.0.0/16", "ipv4_sublen": 8,] ["same_country": ["FR"],]
//!  "client_count": 10, "encrypt": false, "hello": 15, "max_clients": 20,
//!  "min_protocol": 1, "tunnel_refresh": 300, "": ["version"], "version": "<b64>",
//!  ["babel_hmac_sign": "<b64 of RSA(key)>" | "",] ["babel_hmac_accept": ...]}
//! ```
//!
//! # Client side (the node)
//!
//! [`NetworkConfig::from_registry`] inflates (at most [`MAX_JSON`] bytes:
//! a small blob cannot make us allocate gigabytes), parses, base64-decodes
//! the fields listed under `""`, decrypts the babel HMAC keys with our key
//! and checks the CA's signature of the version. It gives the values
//! upstream's node cache (`Cache.updateConfig`) stores:
//!
//! | JSON key | upstream's cache stores | [`NetworkConfig`] field | when missing |
//! |---|---|---|---|
//! | `version` (listed in `""`) | base64-decoded bytes | `version` | error |
//! | `protocol` | int | `protocol` | error |
//! | `min_protocol` | int | `min_protocol` | 1 |
//! | `registry_prefix` | bit string or None | `registry_prefix` | `None` |
//! | `crl` | `crl:json`, loaded as a set | `crl` | empty (as upstream) |
//! | `babel_default` | string | `babel_default` | upstream registry's |
//! | `hello`, `client_count`, `tunnel_refresh` | int | same names | 15, 10, 300 |
//! | `max_clients` | int | `max_clients` | 2 × `client_count` |
//! | `encrypt` | bool | `encrypt` | `false` |
//! | `ipv4` + `ipv4_sublen` | `"IP/N"`, int | `ipv4` | `None` (as upstream) |
//! | `same_country` | `same_country:json` | `same_country` | empty (as upstream) |
//! | `babel_hmac_sign`/`_accept` | `""` kept, else RSA-decrypted bytes | `Some(bytes)`, `Some(empty)` for `""` | `None` (as upstream) |
//! | `delay_restart` | popped, default 0 | `delay_restart` | 0 (as upstream) |
//! | other key listed in `""` | base64-decoded bytes | `extra`: [`ExtraValue::Bytes`] | |
//! | other key | value (lists/dicts as JSON) | `extra`: [`ExtraValue::Json`] | |
//!
//! Where upstream's node would crash on a missing key later, we use the
//! upstream registry's default instead. We are stricter on types (an
//! integer must be a non-negative integer, a known field must not be
//! listed as base64 unless it is `version`): upstream would store such
//! values and fail when using them, we refuse the configuration, which
//! like upstream keeps the previous one in use. Unknown keys starting with
//! `babel_hmac` are kept as they are instead of being decrypted.
//!
//! [`NetworkConfig`] derives serde traits so the node can cache it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;

use flate2::write::ZlibEncoder;
use openssl::x509::X509Ref;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::crypto::{self, CryptoError};
use crate::prefix::Prefix;

mod decode;
mod encode;
mod pyjson;

pub use decode::{inflate, parse_json, unpack};

/// Largest inflated configuration accepted: a CRL of 100,000 serials is
/// well below this.
pub const MAX_JSON: u64 = 4 << 20;

/// The key listing the names of base64-encoded fields.
pub const BASE64_LIST_KEY: &str = "";

/// Keys with a field of their own in [`NetworkConfig`] (`version` is the
/// only one listed as base64).
pub const KNOWN_KEYS: &[&str] = &[
    "version",
    "protocol",
    "min_protocol",
    "registry_prefix",
    "crl",
    "babel_default",
    "hello",
    "client_count",
    "max_clients",
    "tunnel_refresh",
    "encrypt",
    "ipv4",
    "ipv4_sublen",
    "same_country",
    "babel_hmac_sign",
    "babel_hmac_accept",
    "delay_restart",
];

/// A configuration as a JSON object.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;

/// What upstream's registry uses when not told otherwise.
pub mod defaults {
    /// Default babeld interface parameters.
    pub const BABEL_DEFAULT: &str = "max-rtt-penalty 5000 rtt-max 500 rtt-decay 125";
    pub const HELLO: u32 = 15;
    pub const CLIENT_COUNT: u32 = 10;
    pub const TUNNEL_REFRESH: u32 = 300;
    pub const MIN_PROTOCOL: u32 = 1;

    /// `max_clients` defaults to twice `client_count`.
    pub const fn max_clients(client_count: u32) -> u32 {
        client_count.saturating_mul(2)
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("network configuration is not valid zlib data")]
    Zlib,
    #[error("network configuration is larger than {MAX_JSON} bytes once inflated")]
    TooLarge,
    #[error("network configuration is not a JSON object: {0}")]
    Json(String),
    #[error("network configuration has no {0:?}")]
    Missing(&'static str),
    #[error("network configuration field {0:?}: {1}")]
    Field(String, String),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

/// The IPv4 payload network: node `serial` gets `/(prefix_len + sublen)`
/// number `serial` inside `network/prefix_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Payload {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    pub sublen: u8,
}

impl Ipv4Payload {
    /// The IPv4 address (the first of its subnet, except in a /31 or /32)
    /// and subnet length of the node whose certificate has subject
    /// serialNumber `serial`, as upstream computes them; `None` when the
    /// parameters leave it no subnet (upstream then disables the payload).
    pub fn node_address(&self, serial: u64) -> Option<(Ipv4Addr, u8)> {
        let len = u32::from(self.prefix_len) + u32::from(self.sublen);
        if self.sublen > 16 || len > 32 || serial >= 1 << self.sublen {
            return None;
        }
        let base = u32::from(self.network) as u64 | serial << (32 - len);
        let base = u32::try_from(base).ok()?;
        let host = u32::from(len < 31);
        Some((Ipv4Addr::from(base | host), len as u8))
    }
}

/// The value of a key we do not know, kept so nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExtraValue {
    /// A plain value, as JSON text.
    Json(String),
    /// A value listed under `""`: the decoded bytes.
    Bytes(Vec<u8>),
}

/// A decoded network configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Signed version blob (packed integer then the CA's signature).
    pub version: Vec<u8>,
    pub protocol: u32,
    pub min_protocol: u32,
    /// Prefix of the registry's own node (`None` before it has one).
    pub registry_prefix: Option<Prefix>,
    /// Serial numbers of revoked certificates.
    pub crl: BTreeSet<u64>,
    /// Default babeld interface parameters.
    pub babel_default: String,
    /// Babel hello interval (s); OpenVPN times out after 4 of them.
    pub hello: u32,
    pub client_count: u32,
    pub max_clients: u32,
    pub tunnel_refresh: u32,
    pub encrypt: bool,
    pub ipv4: Option<Ipv4Payload>,
    /// Countries whose nodes only connect among themselves.
    pub same_country: Vec<String>,
    /// Babel HMAC keys in clear; `Some(empty)` means "no key".
    pub babel_hmac_sign: Option<Vec<u8>>,
    pub babel_hmac_accept: Option<Vec<u8>>,
    /// Extra delay (s) before restarting after a configuration change.
    pub delay_restart: u32,
    /// Keys we do not know.
    pub extra: BTreeMap<String, ExtraValue>,
}

impl NetworkConfig {
    /// A configuration with upstream registry's defaults.
    pub fn new(version: Vec<u8>, protocol: u32) -> Self {
        NetworkConfig {
            version,
            protocol,
            min_protocol: defaults::MIN_PROTOCOL,
            registry_prefix: None,
            crl: BTreeSet::new(),
            babel_default: defaults::BABEL_DEFAULT.to_owned(),
            hello: defaults::HELLO,
            client_count: defaults::CLIENT_COUNT,
            max_clients: defaults::max_clients(defaults::CLIENT_COUNT),
            tunnel_refresh: defaults::TUNNEL_REFRESH,
            encrypt: false,
            ipv4: None,
            same_country: Vec::new(),
            babel_hmac_sign: None,
            babel_hmac_accept: None,
            delay_restart: 0,
            extra: BTreeMap::new(),
        }
    }

    /// Checks the CA's signature on the version; returns the version number.
    pub fn verify_version(&self, ca: &X509Ref) -> Result<u64, ConfigError> {
        Ok(crypto::verify_version(ca, &self.version)?)
    }
}

/// Compresses configuration JSON (zlib, default level, like upstream).
pub fn compress(json: &[u8]) -> Result<Vec<u8>, ConfigError> {
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(json).map_err(|_| ConfigError::Zlib)?;
    z.finish().map_err(|_| ConfigError::Zlib)
}

#[cfg(test)]
mod tests {
    use super::Ipv4Payload;

    fn payload(network: &str, prefix_len: u8, sublen: u8) -> Ipv4Payload {
        Ipv4Payload {
            network: network.parse().unwrap(),
            prefix_len,
            sublen,
        }
    }

    #[test]
    fn node_addresses_as_upstream() {
        // Values from upstream's formula (re6st/cli/node.py).
        let p = payload("198.19.128.0", 17, 8);
        assert_eq!(
            p.node_address(5),
            Some(("198.19.130.129".parse().unwrap(), 25))
        );
        assert_eq!(
            p.node_address(0),
            Some(("198.19.128.1".parse().unwrap(), 25))
        );
        assert_eq!(p.node_address(256), None, "serial beyond the subnets");
        let p = payload("198.18.0.0", 24, 7);
        assert_eq!(p.node_address(3), Some(("198.18.0.6".parse().unwrap(), 31)));
        assert_eq!(payload("198.18.0.0", 8, 17).node_address(1), None);
        assert_eq!(payload("198.18.0.0", 24, 16).node_address(1), None);
    }
}
