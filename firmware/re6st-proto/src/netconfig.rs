//! The network configuration the registry hands to nodes
//! (`getNetworkConfig`): zlib-compressed JSON, with the names of
//! base64-encoded fields listed under the key `""`, and the babel HMAC keys
//! RSA-encrypted for the requesting node.
//!
//! Client side, [`NetworkConfig::decode`] gives the same values upstream's
//! node cache stores: base64 fields decoded, `babel_hmac_*` decrypted (an
//! empty string stays empty: "no key"), other keys as they are, unknown
//! keys kept as JSON text. Server side, [`pack`] compresses a JSON object.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use openssl::pkey::{PKeyRef, Private};
use openssl::x509::X509Ref;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::crypto::{self, CryptoError};
use crate::prefix::Prefix;

/// Largest decompressed configuration accepted (a CRL of thousands of
/// serials is still far below this).
pub const MAX_JSON: u64 = 4 << 20;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("network configuration is not valid zlib data")]
    Zlib,
    #[error("network configuration is larger than {MAX_JSON} bytes once inflated")]
    TooLarge,
    #[error("network configuration is not a JSON object: {0}")]
    Json(String),
    #[error("network configuration field {0}: {1}")]
    Field(&'static str, String),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

/// Upstream's defaults for keys a registry may leave out.
mod defaults {
    pub fn hello() -> u32 {
        15
    }
    pub fn client_count() -> u32 {
        10
    }
    pub fn max_clients() -> u32 {
        20
    }
    pub fn tunnel_refresh() -> u32 {
        300
    }
    pub fn min_protocol() -> u32 {
        1
    }
}

/// A decoded network configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Signed version blob (packed integer + CA signature).
    pub version: Vec<u8>,
    pub protocol: u32,
    pub min_protocol: u32,
    /// Prefix of the registry's own node.
    pub registry_prefix: Option<Prefix>,
    /// Serial numbers of revoked certificates.
    pub crl: BTreeSet<u64>,
    /// Default babeld interface parameters.
    pub babel_default: String,
    pub hello: u32,
    pub client_count: u32,
    pub max_clients: u32,
    pub tunnel_refresh: u32,
    pub encrypt: bool,
    /// IPv4 payload network (`IP/N`) and per-node sub-length.
    pub ipv4: Option<(String, u8)>,
    pub same_country: Vec<String>,
    /// Decrypted babel HMAC keys; `Some(empty)` means "no key".
    pub babel_hmac_sign: Option<Vec<u8>>,
    pub babel_hmac_accept: Option<Vec<u8>>,
    pub delay_restart: u32,
    /// Keys we do not know, as JSON text, so that nothing is lost.
    pub extra: BTreeMap<String, String>,
}

/// Compresses a configuration object (server side).
pub fn pack(config: &Map<String, Value>) -> Result<Vec<u8>, ConfigError> {
    let json = serde_json::to_vec(config).map_err(|e| ConfigError::Json(e.to_string()))?;
    compress(&json)
}

/// Compresses configuration JSON already serialized by the caller.
pub fn compress(json: &[u8]) -> Result<Vec<u8>, ConfigError> {
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(json).map_err(|_| ConfigError::Zlib)?;
    z.finish().map_err(|_| ConfigError::Zlib)
}

/// A configuration as a JSON object.
pub type JsonMap = Map<String, Value>;

/// Inflates (with a size bound) and parses a configuration blob.
pub fn unpack(blob: &[u8]) -> Result<JsonMap, ConfigError> {
    let mut json = Vec::new();
    ZlibDecoder::new(blob)
        .take(MAX_JSON + 1)
        .read_to_end(&mut json)
        .map_err(|_| ConfigError::Zlib)?;
    if json.len() as u64 > MAX_JSON {
        return Err(ConfigError::TooLarge);
    }
    parse_json(&json)
}

/// Parses configuration JSON (already inflated).
pub fn parse_json(json: &[u8]) -> Result<JsonMap, ConfigError> {
    match serde_json::from_slice(json) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ConfigError::Json("not an object".into())),
        Err(e) => Err(ConfigError::Json(e.to_string())),
    }
}

fn field_err(name: &'static str, why: impl ToString) -> ConfigError {
    ConfigError::Field(name, why.to_string())
}

fn as_u32(name: &'static str, v: &Value) -> Result<u32, ConfigError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| field_err(name, "expected a small non-negative integer"))
}

fn as_str<'a>(name: &'static str, v: &'a Value) -> Result<&'a str, ConfigError> {
    v.as_str()
        .ok_or_else(|| field_err(name, "expected a string"))
}

impl NetworkConfig {
    /// Decodes a blob from `getNetworkConfig`, decrypting the babel HMAC
    /// keys with our private key. The version signature is not checked
    /// here: see [`NetworkConfig::verify_version`].
    pub fn decode(blob: &[u8], our_key: &PKeyRef<Private>) -> Result<Self, ConfigError> {
        Self::from_map(unpack(blob)?, our_key)
    }

    pub fn from_map(
        mut map: Map<String, Value>,
        our_key: &PKeyRef<Private>,
    ) -> Result<Self, ConfigError> {
        let base64_fields: BTreeSet<String> = match map.remove("") {
            None => BTreeSet::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| as_str("''", v).map(str::to_owned))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(field_err("''", "expected a list of names")),
        };
        let mut c = NetworkConfig {
            version: Vec::new(),
            protocol: 0,
            min_protocol: defaults::min_protocol(),
            registry_prefix: None,
            crl: BTreeSet::new(),
            babel_default: String::new(),
            hello: defaults::hello(),
            client_count: defaults::client_count(),
            max_clients: defaults::max_clients(),
            tunnel_refresh: defaults::tunnel_refresh(),
            encrypt: false,
            ipv4: None,
            same_country: Vec::new(),
            babel_hmac_sign: None,
            babel_hmac_accept: None,
            delay_restart: 0,
            extra: BTreeMap::new(),
        };
        let b64 = |name: &'static str, v: &Value| -> Result<Vec<u8>, ConfigError> {
            B64.decode(as_str(name, v)?).map_err(|e| field_err(name, e))
        };
        let mut ipv4_net = None;
        let mut ipv4_sublen = None;
        for (k, v) in map {
            match k.as_str() {
                "version" if base64_fields.contains("version") => c.version = b64("version", &v)?,
                "version" => return Err(field_err("version", "not listed as base64")),
                "protocol" => c.protocol = as_u32("protocol", &v)?,
                "min_protocol" => c.min_protocol = as_u32("min_protocol", &v)?,
                "registry_prefix" => {
                    c.registry_prefix = match &v {
                        Value::Null => None,
                        v => Some(
                            as_str("registry_prefix", v)?
                                .parse()
                                .map_err(|e| field_err("registry_prefix", e))?,
                        ),
                    }
                }
                "crl" => {
                    let a = v
                        .as_array()
                        .ok_or_else(|| field_err("crl", "expected a list"))?;
                    c.crl = a
                        .iter()
                        .map(|s| {
                            s.as_u64()
                                .ok_or_else(|| field_err("crl", "expected serial numbers"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                "babel_default" => c.babel_default = as_str("babel_default", &v)?.to_owned(),
                "hello" => c.hello = as_u32("hello", &v)?,
                "client_count" => c.client_count = as_u32("client_count", &v)?,
                "max_clients" => c.max_clients = as_u32("max_clients", &v)?,
                "tunnel_refresh" => c.tunnel_refresh = as_u32("tunnel_refresh", &v)?,
                "delay_restart" => c.delay_restart = as_u32("delay_restart", &v)?,
                "encrypt" => {
                    c.encrypt = v
                        .as_bool()
                        .ok_or_else(|| field_err("encrypt", "expected a boolean"))?
                }
                "ipv4" => ipv4_net = Some(as_str("ipv4", &v)?.to_owned()),
                "ipv4_sublen" => {
                    ipv4_sublen = Some(
                        u8::try_from(as_u32("ipv4_sublen", &v)?)
                            .map_err(|e| field_err("ipv4_sublen", e))?,
                    )
                }
                "same_country" => {
                    let a = v
                        .as_array()
                        .ok_or_else(|| field_err("same_country", "expected a list"))?;
                    c.same_country = a
                        .iter()
                        .map(|s| as_str("same_country", s).map(str::to_owned))
                        .collect::<Result<_, _>>()?;
                }
                "babel_hmac_sign" | "babel_hmac_accept" => {
                    let name = if k == "babel_hmac_sign" {
                        "babel_hmac_sign"
                    } else {
                        "babel_hmac_accept"
                    };
                    let key = match &v {
                        Value::Null => None,
                        v if as_str(name, v)?.is_empty() => Some(Vec::new()),
                        v => Some(crypto::decrypt(our_key, &b64(name, v)?)?),
                    };
                    if name == "babel_hmac_sign" {
                        c.babel_hmac_sign = key;
                    } else {
                        c.babel_hmac_accept = key;
                    }
                }
                _ => {
                    c.extra.insert(k, v.to_string());
                }
            }
        }
        c.ipv4 = match (ipv4_net, ipv4_sublen) {
            (Some(n), Some(l)) => Some((n, l)),
            (None, None) => None,
            _ => return Err(field_err("ipv4", "ipv4 and ipv4_sublen go together")),
        };
        Ok(c)
    }

    /// Checks the CA's signature on the version; returns the version number.
    pub fn verify_version(&self, ca: &X509Ref) -> Result<u64, ConfigError> {
        Ok(crypto::verify_version(ca, &self.version)?)
    }

    /// Encodes this configuration as a registry would for the node holding
    /// `client_cert` (used by tests and simulations; the registry builds its
    /// JSON itself to keep upstream's exact stored form).
    pub fn to_map(&self, client_cert: &X509Ref) -> Result<Map<String, Value>, ConfigError> {
        let mut m = Map::new();
        m.insert(String::new(), Value::from(vec!["version"]));
        m.insert("version".into(), B64.encode(&self.version).into());
        m.insert("protocol".into(), self.protocol.into());
        m.insert("min_protocol".into(), self.min_protocol.into());
        m.insert(
            "registry_prefix".into(),
            self.registry_prefix
                .map(|p| Value::from(p.to_string()))
                .unwrap_or(Value::Null),
        );
        m.insert(
            "crl".into(),
            Value::from(self.crl.iter().copied().collect::<Vec<_>>()),
        );
        m.insert("babel_default".into(), self.babel_default.clone().into());
        for (k, v) in [
            ("hello", self.hello),
            ("client_count", self.client_count),
            ("max_clients", self.max_clients),
            ("tunnel_refresh", self.tunnel_refresh),
        ] {
            m.insert(k.into(), v.into());
        }
        if self.delay_restart != 0 {
            m.insert("delay_restart".into(), self.delay_restart.into());
        }
        m.insert("encrypt".into(), self.encrypt.into());
        if let Some((net, sublen)) = &self.ipv4 {
            m.insert("ipv4".into(), net.clone().into());
            m.insert("ipv4_sublen".into(), (*sublen).into());
        }
        if !self.same_country.is_empty() {
            m.insert(
                "same_country".into(),
                Value::from(self.same_country.clone()),
            );
        }
        for (k, key) in [
            ("babel_hmac_sign", &self.babel_hmac_sign),
            ("babel_hmac_accept", &self.babel_hmac_accept),
        ] {
            if let Some(key) = key {
                let v = if key.is_empty() {
                    String::new()
                } else {
                    B64.encode(crypto::encrypt_for(client_cert, key)?)
                };
                m.insert(k.into(), v.into());
            }
        }
        for (k, v) in &self.extra {
            if let Ok(v) = serde_json::from_str(v) {
                m.insert(k.clone(), v);
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pki: &re6st_testkit::Pki) -> NetworkConfig {
        NetworkConfig {
            version: crypto::sign_version(&pki.ca_key, 7).unwrap(),
            protocol: 10,
            min_protocol: 1,
            registry_prefix: Some("0000000000000001".parse().unwrap()),
            crl: [3, 5].into(),
            babel_default: "max-rtt-penalty 5000 rtt-max 500 rtt-decay 125".into(),
            hello: 4,
            client_count: 3,
            max_clients: 6,
            tunnel_refresh: 60,
            encrypt: false,
            ipv4: Some(("198.18.0.0/16".into(), 8)),
            same_country: vec!["FR".into()],
            babel_hmac_sign: Some(vec![1; 16]),
            babel_hmac_accept: Some(Vec::new()),
            delay_restart: 0,
            extra: [("future".to_string(), "{\"a\":1}".to_string())].into(),
        }
    }

    #[test]
    fn round_trip_with_encrypted_keys() {
        let pki = re6st_testkit::Pki::new("2001:db8::/32");
        let node = pki.node("1/16", 1);
        let c = sample(&pki);
        let blob = pack(&c.to_map(&node.cert).unwrap()).unwrap();
        let d = NetworkConfig::decode(&blob, &node.key).unwrap();
        assert_eq!(d, c);
        assert_eq!(d.verify_version(&pki.ca).unwrap(), 7);
        // Another node cannot read the babel keys.
        let other = pki.node("2/16", 2);
        assert!(NetworkConfig::decode(&blob, &other.key).is_err());
    }

    #[test]
    fn bad_blobs() {
        let key = re6st_testkit::rsa_key(1024);
        assert!(matches!(
            NetworkConfig::decode(b"garbage", &key),
            Err(ConfigError::Zlib)
        ));
        let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![b' '; (MAX_JSON + 10) as usize]).unwrap();
        let bomb = z.finish().unwrap();
        assert!(bomb.len() < 10_000);
        assert!(matches!(
            NetworkConfig::decode(&bomb, &key),
            Err(ConfigError::TooLarge)
        ));
        for json in [
            r#"[1]"#,
            r#"{"hello": "x"}"#,
            r#"{"crl": [-1]}"#,
            r#"{"version": "AA=="}"#,
            r#"{"ipv4": "1.2.3.0/24"}"#,
            r#"{"": 3}"#,
        ] {
            let mut m = Map::new();
            let v: Value = serde_json::from_str(json).unwrap();
            let blob = if let Value::Object(o) = v {
                m.extend(o);
                pack(&m).unwrap()
            } else {
                let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                z.write_all(json.as_bytes()).unwrap();
                z.finish().unwrap()
            };
            assert!(NetworkConfig::decode(&blob, &key).is_err(), "{json}");
        }
    }
}
