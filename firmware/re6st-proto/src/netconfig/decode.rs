//! Node side: from the registry's blob to a [`NetworkConfig`].

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use flate2::{Decompress, FlushDecompress, Status};
use openssl::pkey::{PKeyRef, Private};
use openssl::x509::X509Ref;
use serde_json::Value;

use super::{
    defaults, ConfigError, ExtraValue, Ipv4Payload, JsonMap, NetworkConfig, BASE64_LIST_KEY,
    KNOWN_KEYS, MAX_JSON,
};
use crate::crypto;

/// Inflates a zlib stream into at most [`MAX_JSON`] bytes. Like Python's
/// `zlib.decompress`, bytes after the end of the stream are ignored and a
/// truncated stream is an error.
pub fn inflate(blob: &[u8]) -> Result<Vec<u8>, ConfigError> {
    inflate_bounded(blob, usize::try_from(MAX_JSON).unwrap_or(usize::MAX))
}

fn inflate_bounded(blob: &[u8], limit: usize) -> Result<Vec<u8>, ConfigError> {
    let mut z = Decompress::new(true);
    let mut out = Vec::new();
    loop {
        if out.len() > limit {
            return Err(ConfigError::TooLarge);
        }
        if out.len() == out.capacity() {
            // Grow geometrically, but never past one byte over the limit.
            let room = out.len().clamp(4096, 1 << 20);
            out.reserve_exact(room.min(limit.saturating_add(1) - out.len()));
        }
        let consumed = usize::try_from(z.total_in()).map_err(|_| ConfigError::Zlib)?;
        let input = blob.get(consumed..).ok_or(ConfigError::Zlib)?;
        let (in_before, out_before) = (z.total_in(), z.total_out());
        let status = z
            .decompress_vec(input, &mut out, FlushDecompress::None)
            .map_err(|_| ConfigError::Zlib)?;
        match status {
            Status::StreamEnd => break,
            // No progress with room left: the stream is truncated.
            _ if z.total_in() == in_before && z.total_out() == out_before => {
                return Err(ConfigError::Zlib)
            }
            _ => {}
        }
    }
    if out.len() > limit {
        return Err(ConfigError::TooLarge);
    }
    Ok(out)
}

/// Parses configuration JSON (already inflated) into an object.
pub fn parse_json(json: &[u8]) -> Result<JsonMap, ConfigError> {
    match serde_json::from_slice(json) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ConfigError::Json("not an object".into())),
        Err(e) => Err(ConfigError::Json(e.to_string())),
    }
}

/// Inflates (bounded) and parses a configuration blob.
pub fn unpack(blob: &[u8]) -> Result<JsonMap, ConfigError> {
    parse_json(&inflate(blob)?)
}

fn bad(name: &str, why: impl ToString) -> ConfigError {
    ConfigError::Field(name.to_owned(), why.to_string())
}

fn as_u32(name: &str, v: &Value) -> Result<u32, ConfigError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| bad(name, "expected a non-negative 32-bit integer"))
}

fn as_str<'a>(name: &str, v: &'a Value) -> Result<&'a str, ConfigError> {
    v.as_str().ok_or_else(|| bad(name, "expected a string"))
}

fn as_list<'a>(name: &str, v: &'a Value) -> Result<&'a [Value], ConfigError> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| bad(name, "expected a list"))
}

fn base64(name: &str, v: &Value) -> Result<Vec<u8>, ConfigError> {
    B64.decode(as_str(name, v)?).map_err(|e| bad(name, e))
}

fn bit_count(name: &str, v: &Value) -> Result<u8, ConfigError> {
    u8::try_from(as_u32(name, v)?)
        .ok()
        .filter(|&n| n <= 32)
        .ok_or_else(|| bad(name, "expected at most 32 bits"))
}

/// `"IP/N"` as upstream's registry writes it.
fn ipv4_network(v: &Value) -> Result<(Ipv4Addr, u8), ConfigError> {
    let text = as_str("ipv4", v)?;
    let (ip, len) = text
        .split_once('/')
        .ok_or_else(|| bad("ipv4", "expected IP/N"))?;
    let ip = ip.parse().map_err(|e| bad("ipv4", e))?;
    let len = len.parse::<u8>().ok().filter(|&n| n <= 32);
    Ok((ip, len.ok_or_else(|| bad("ipv4", "bad prefix length"))?))
}

/// A babel HMAC key: `null` is no entry, `""` "no key", else a ciphertext.
fn babel_key(
    name: &str,
    v: &Value,
    our_key: &PKeyRef<Private>,
) -> Result<Option<Vec<u8>>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(Some(Vec::new())),
        v => Ok(Some(crypto::decrypt(our_key, &base64(name, v)?)?)),
    }
}

fn base64_names(map: &mut JsonMap) -> Result<BTreeSet<String>, ConfigError> {
    match map.remove(BASE64_LIST_KEY) {
        None => Ok(BTreeSet::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| as_str(BASE64_LIST_KEY, v).map(str::to_owned))
            .collect(),
        Some(_) => Err(bad(BASE64_LIST_KEY, "expected a list of names")),
    }
}

impl NetworkConfig {
    /// The whole node-side path: inflate, parse, decode and decrypt with
    /// our private key, then check the version's signature by the CA.
    pub fn from_registry(
        blob: &[u8],
        our_key: &PKeyRef<Private>,
        ca: &X509Ref,
    ) -> Result<Self, ConfigError> {
        let config = Self::decode(blob, our_key)?;
        config.verify_version(ca)?;
        Ok(config)
    }

    /// Decodes a blob from `getNetworkConfig` without checking the version
    /// signature (see [`NetworkConfig::verify_version`]).
    pub fn decode(blob: &[u8], our_key: &PKeyRef<Private>) -> Result<Self, ConfigError> {
        Self::from_map(unpack(blob)?, our_key)
    }

    /// Decodes a parsed configuration object.
    pub fn from_map(mut map: JsonMap, our_key: &PKeyRef<Private>) -> Result<Self, ConfigError> {
        let base64_fields = base64_names(&mut map)?;
        let mut c = NetworkConfig::new(Vec::new(), 0);
        let (mut version, mut protocol, mut max_clients) = (None, None, None);
        let (mut ipv4, mut ipv4_sublen) = (None, None);
        for (k, v) in map {
            let listed = base64_fields.contains(&k);
            match (k.as_str(), listed) {
                ("version", true) => version = Some(base64("version", &v)?),
                ("version", false) => return Err(bad("version", "not listed as base64")),
                (name, true) if KNOWN_KEYS.contains(&name) => {
                    return Err(bad(&k, "listed as base64"))
                }
                ("protocol", _) => protocol = Some(as_u32(&k, &v)?),
                ("min_protocol", _) => c.min_protocol = as_u32(&k, &v)?,
                ("registry_prefix", _) => {
                    c.registry_prefix = match &v {
                        Value::Null => None,
                        v => Some(as_str(&k, v)?.parse().map_err(|e| bad(&k, e))?),
                    }
                }
                ("crl", _) => {
                    c.crl = as_list(&k, &v)?
                        .iter()
                        .map(|s| s.as_u64().ok_or_else(|| bad("crl", "expected serials")))
                        .collect::<Result<_, _>>()?
                }
                ("babel_default", _) => c.babel_default = as_str(&k, &v)?.to_owned(),
                ("hello", _) => c.hello = as_u32(&k, &v)?,
                ("client_count", _) => c.client_count = as_u32(&k, &v)?,
                ("max_clients", _) => max_clients = Some(as_u32(&k, &v)?),
                ("tunnel_refresh", _) => c.tunnel_refresh = as_u32(&k, &v)?,
                ("delay_restart", _) => c.delay_restart = as_u32(&k, &v)?,
                ("encrypt", _) => {
                    c.encrypt = v.as_bool().ok_or_else(|| bad(&k, "expected a boolean"))?
                }
                ("ipv4", _) => ipv4 = Some(ipv4_network(&v)?),
                ("ipv4_sublen", _) => ipv4_sublen = Some(bit_count(&k, &v)?),
                ("same_country", _) => {
                    c.same_country = as_list(&k, &v)?
                        .iter()
                        .map(|s| as_str("same_country", s).map(str::to_owned))
                        .collect::<Result<_, _>>()?
                }
                ("babel_hmac_sign", _) => c.babel_hmac_sign = babel_key(&k, &v, our_key)?,
                ("babel_hmac_accept", _) => c.babel_hmac_accept = babel_key(&k, &v, our_key)?,
                (_, true) => {
                    let bytes = base64(&k, &v)?;
                    c.extra.insert(k, ExtraValue::Bytes(bytes));
                }
                (_, false) => {
                    let text = v.to_string();
                    c.extra.insert(k, ExtraValue::Json(text));
                }
            }
        }
        c.version = version.ok_or(ConfigError::Missing("version"))?;
        c.protocol = protocol.ok_or(ConfigError::Missing("protocol"))?;
        c.max_clients = max_clients.unwrap_or(defaults::max_clients(c.client_count));
        c.ipv4 = match (ipv4, ipv4_sublen) {
            (Some((network, prefix_len)), Some(sublen)) => Some(Ipv4Payload {
                network,
                prefix_len,
                sublen,
            }),
            (None, None) => None,
            _ => return Err(bad("ipv4", "ipv4 and ipv4_sublen go together")),
        };
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::ZlibEncoder;

    use super::super::compress;
    use super::*;

    fn zlib(data: &[u8]) -> Vec<u8> {
        compress(data).unwrap()
    }

    #[test]
    fn inflate_like_python() {
        let data = b"{\"a\": 1}".repeat(1000);
        let blob = zlib(&data);
        assert_eq!(inflate(&blob).unwrap(), data);
        // Trailing bytes are ignored, truncation is an error.
        let mut trailing = blob.clone();
        trailing.extend_from_slice(b"xx");
        assert_eq!(inflate(&trailing).unwrap(), data);
        for cut in [0, 1, 2, blob.len() / 2, blob.len() - 1] {
            assert!(
                matches!(inflate(&blob[..cut]), Err(ConfigError::Zlib)),
                "{cut}"
            );
        }
        assert!(matches!(inflate(b"garbage"), Err(ConfigError::Zlib)));
        assert_eq!(inflate(&zlib(b"")).unwrap(), b"");
    }

    #[test]
    fn zip_bomb_is_refused_without_inflating_it() {
        let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..64 {
            z.write_all(&chunk).unwrap();
        }
        let bomb = z.finish().unwrap();
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        assert!(matches!(inflate(&bomb), Err(ConfigError::TooLarge)));
        // Exactly at the limit is fine, one byte more is not.
        assert_eq!(
            inflate_bounded(&zlib(&[1; 5000]), 5000).unwrap().len(),
            5000
        );
        assert!(matches!(
            inflate_bounded(&zlib(&[1; 5001]), 5000),
            Err(ConfigError::TooLarge)
        ));
    }

    fn decode_json(json: &str) -> Result<NetworkConfig, ConfigError> {
        let key = re6st_testkit::rsa_key(1024);
        NetworkConfig::decode(&zlib(json.as_bytes()), &key)
    }

    const MINIMAL: &str = r#""": ["version"], "version": "AQ==", "protocol": 10"#;

    #[test]
    fn missing_keys_take_registry_defaults() {
        let c = decode_json(&format!("{{{MINIMAL}, \"client_count\": 4}}")).unwrap();
        let mut want = NetworkConfig::new(vec![1], 10);
        want.client_count = 4;
        want.max_clients = 8;
        assert_eq!(c, want);
        assert!(matches!(
            decode_json(r#"{"protocol": 10}"#),
            Err(ConfigError::Missing("version"))
        ));
        assert!(matches!(
            decode_json(r#"{"": ["version"], "version": "AQ=="}"#),
            Err(ConfigError::Missing("protocol"))
        ));
    }

    #[test]
    fn unknown_keys_are_kept() {
        let c = decode_json(&format!(
            r#"{{{MINIMAL}, "": ["version", "blob"], "blob": "AAE=", "future": {{"a": [1]}}, "babel_hmac_x": "zz"}}"#
        ))
        .unwrap();
        assert_eq!(c.extra["blob"], ExtraValue::Bytes(vec![0, 1]));
        assert_eq!(c.extra["future"], ExtraValue::Json(r#"{"a":[1]}"#.into()));
        assert_eq!(c.extra["babel_hmac_x"], ExtraValue::Json(r#""zz""#.into()));
    }

    #[test]
    fn wrong_types_are_refused() {
        for field in [
            r#""hello": "x""#,
            r#""hello": -1"#,
            r#""hello": 1.5"#,
            r#""hello": 4294967296"#,
            r#""encrypt": 1"#,
            r#""crl": [-1]"#,
            r#""crl": "1""#,
            r#""registry_prefix": "012""#,
            r#""registry_prefix": 5"#,
            r#""same_country": "FR""#,
            r#""same_country": [1]"#,
            r#""ipv4": "10.0.0.0/8""#,
            r#""ipv4_sublen": 8"#,
            r#""ipv4": "10.0.0.0/33", "ipv4_sublen": 8"#,
            r#""ipv4": "10.0.0/8", "ipv4_sublen": 8"#,
            r#""ipv4": "10.0.0.0/8", "ipv4_sublen": 33"#,
            r#""babel_hmac_sign": "not base64!""#,
            r#""babel_hmac_sign": "AAAA""#,
            r#""babel_hmac_accept": 3"#,
            r#""blob": "AA==", "": ["version", "blob", "hello"], "hello": 3"#,
            r#""": "version""#,
            r#""": [1]"#,
        ] {
            let json = format!("{{{MINIMAL}, {field}}}");
            assert!(decode_json(&json).is_err(), "{json}");
        }
        for json in [
            r#"{"": [], "version": "AQ==", "protocol": 10}"#,
            r#"{"": ["version"], "version": "A", "protocol": 10}"#,
            "[1]",
            "{",
        ] {
            assert!(decode_json(json).is_err(), "{json}");
        }
    }
}
