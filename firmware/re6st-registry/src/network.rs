//! The network configuration the registry hands to nodes, the rule that
//! bumps its signed version, and the babel HMAC key rotation.
//!
//! The parameters are serialized exactly as upstream does for its
//! `last_config` record (Python's `json.dumps(..., sort_keys=True)`), so
//! that a database written by upstream is not seen as changed.

use serde_json::{Map, Value};

/// Babel options every node gets (upstream's `babel_default`).
pub const BABEL_DEFAULT: &str = "max-rtt-penalty 5000 rtt-max 500 rtt-decay 125";

/// The config rows of the babel HMAC keys: their state says which key
/// nodes sign with and which other one they accept.
pub const BABEL_HMAC: [&str; 3] = ["babel_hmac0", "babel_hmac1", "babel_hmac2"];

/// Parameters fixed by the registry's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkParams {
    /// `IP/N` and the length of each node's IPv4 subnet.
    pub ipv4: Option<(String, u8)>,
    pub same_country: Vec<String>,
    pub client_count: u32,
    pub encrypt: bool,
    pub hello: u32,
    pub max_clients: u32,
    pub min_protocol: u32,
    pub tunnel_refresh: u32,
    pub protocol: u32,
}

impl NetworkParams {
    /// The parameters as a JSON object (keys sorted), given the revoked
    /// serials and the registry node's prefix.
    pub fn to_json(&self, crl: &[i64], registry_prefix: Option<&str>) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("babel_default".into(), BABEL_DEFAULT.into());
        m.insert("crl".into(), crl.iter().copied().map(Value::from).collect());
        m.insert("protocol".into(), self.protocol.into());
        m.insert(
            "registry_prefix".into(),
            registry_prefix.map_or(Value::Null, Value::from),
        );
        if let Some((net, sublen)) = &self.ipv4 {
            m.insert("ipv4".into(), net.as_str().into());
            m.insert("ipv4_sublen".into(), (*sublen).into());
        }
        if !self.same_country.is_empty() {
            m.insert(
                "same_country".into(),
                self.same_country
                    .iter()
                    .map(|s| Value::from(s.as_str()))
                    .collect(),
            );
        }
        m.insert("client_count".into(), self.client_count.into());
        m.insert("encrypt".into(), self.encrypt.into());
        m.insert("hello".into(), self.hello.into());
        m.insert("max_clients".into(), self.max_clients.into());
        m.insert("min_protocol".into(), self.min_protocol.into());
        m.insert("tunnel_refresh".into(), self.tunnel_refresh.into());
        m
    }
}

/// Python's `json.dumps(v, sort_keys=True)`: `", "` and `": "` separators,
/// non-ASCII escaped.
pub fn python_json(v: &Value) -> String {
    let mut out = String::new();
    write_python_json(v, &mut out);
    out
}

fn write_python_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_python_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_string(k, out);
                out.push_str(": ");
                if let Some(x) = m.get(k) {
                    write_python_json(x, out);
                }
            }
            out.push('}');
        }
    }
}

fn write_python_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The babel HMAC keys (`babel_hmac0..2`), `None` when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HmacKeys(pub [Option<Vec<u8>>; 3]);

fn set(k: &Option<Vec<u8>>) -> bool {
    k.as_ref().is_some_and(|k| !k.is_empty())
}

impl HmacKeys {
    /// The next state of `updateHMAC`; `fresh` is a new random key, used
    /// only by the transitions that introduce one.
    ///
    /// Rotation goes: none → (new key signed, unsigned packets accepted) →
    /// key only → (key signed, next key accepted) → (next key signed, old
    /// accepted) → next key only → ...
    pub fn rotate(&self, fresh: Vec<u8>) -> HmacKeys {
        let [h0, h1, h2] = &self.0;
        HmacKeys(if set(h0) {
            if set(h1) {
                [None, h1.clone(), h0.clone()]
            } else {
                [h0.clone(), Some(fresh), h2.clone()]
            }
        } else if set(h1) {
            [h1.clone(), None, None]
        } else {
            [h0.clone(), Some(fresh), Some(vec![])]
        })
    }

    /// The keys nodes are told about: the first present one is the key to
    /// sign with, the second one another key to accept (empty: accept
    /// unsigned packets).
    pub fn sign_accept(&self) -> (Option<&[u8]>, Option<&[u8]>) {
        let mut present = self.0.iter().flatten().map(Vec::as_slice);
        (present.next(), present.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> NetworkParams {
        NetworkParams {
            ipv4: None,
            same_country: vec![],
            client_count: 10,
            encrypt: false,
            hello: 15,
            max_clients: 20,
            min_protocol: 1,
            tunnel_refresh: 300,
            protocol: 8,
        }
    }

    #[test]
    fn json_like_python() {
        let v = params().to_json(&[3, 5], Some("0001"));
        assert_eq!(
            python_json(&Value::Object(v)),
            "{\"babel_default\": \"max-rtt-penalty 5000 rtt-max 500 rtt-decay 125\", \
             \"client_count\": 10, \"crl\": [3, 5], \"encrypt\": false, \"hello\": 15, \
             \"max_clients\": 20, \"min_protocol\": 1, \"protocol\": 8, \
             \"registry_prefix\": \"0001\", \"tunnel_refresh\": 300}"
        );
        assert_eq!(
            python_json(&Value::from("é\u{1}\"")),
            "\"\\u00e9\\u0001\\\"\""
        );
        assert_eq!(python_json(&Value::from("😀")), "\"\\ud83d\\ude00\"");
    }

    /// Cross-check against upstream's own serialization of the same
    /// parameters (what it stores as `last_config`).
    #[test]
    fn json_matches_upstream() {
        let mut p = params();
        p.ipv4 = Some(("10.42.0.0/16".into(), 8));
        p.same_country = vec!["FR".into(), "DE".into()];
        p.encrypt = true;
        let ours = python_json(&Value::Object(p.to_json(&[1, 7], None)));
        let script = "import json\n\
            kw = {'babel_default': 'max-rtt-penalty 5000 rtt-max 500 rtt-decay 125',\n\
             'crl': [1, 7], 'protocol': 8, 'registry_prefix': None,\n\
             'ipv4': '10.42.0.0/16', 'ipv4_sublen': 8, 'same_country': ['FR', 'DE'],\n\
             'client_count': 10, 'encrypt': True, 'hello': 15, 'max_clients': 20,\n\
             'min_protocol': 1, 'tunnel_refresh': 300}\n\
            print(json.dumps(kw, sort_keys=True), end='')";
        let theirs = re6st_testkit::run_upstream(script, &[], b"");
        assert_eq!(ours, String::from_utf8(theirs).unwrap());
    }

    #[test]
    fn hmac_rotation_cycle() {
        let k = |b: u8| Some(vec![b; 16]);
        let s0 = HmacKeys::default();
        let s1 = s0.rotate(vec![1; 16]);
        assert_eq!(s1, HmacKeys([None, k(1), Some(vec![])]));
        assert_eq!(s1.sign_accept(), (Some(&[1u8; 16][..]), Some(&[][..])));
        let s2 = s1.rotate(vec![9; 16]);
        assert_eq!(s2, HmacKeys([k(1), None, None]));
        assert_eq!(s2.sign_accept(), (Some(&[1u8; 16][..]), None));
        let s3 = s2.rotate(vec![2; 16]);
        assert_eq!(s3, HmacKeys([k(1), k(2), None]));
        assert_eq!(
            s3.sign_accept(),
            (Some(&[1u8; 16][..]), Some(&[2u8; 16][..]))
        );
        let s4 = s3.rotate(vec![9; 16]);
        assert_eq!(s4, HmacKeys([None, k(2), k(1)]));
        assert_eq!(
            s4.sign_accept(),
            (Some(&[2u8; 16][..]), Some(&[1u8; 16][..]))
        );
        let s5 = s4.rotate(vec![9; 16]);
        assert_eq!(s5, HmacKeys([k(2), None, None]));
    }
}
