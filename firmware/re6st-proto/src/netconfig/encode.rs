//! Registry side: a [`NetworkConfig`] as upstream's registry writes it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::x509::X509Ref;
use serde_json::Value;

use super::pyjson::write_object;
use super::{compress, ConfigError, ExtraValue, NetworkConfig, BASE64_LIST_KEY, KNOWN_KEYS};
use crate::crypto::{self, CryptoError};

impl NetworkConfig {
    /// The parameters whose change makes upstream's registry bump the
    /// version, in the order it inserts them (without `""` and `version`).
    fn params(&self) -> Vec<(String, Value)> {
        let mut p: Vec<(String, Value)> = vec![
            ("babel_default".into(), self.babel_default.clone().into()),
            ("crl".into(), self.crl.iter().copied().collect()),
            ("protocol".into(), self.protocol.into()),
            (
                "registry_prefix".into(),
                self.registry_prefix
                    .map_or(Value::Null, |p| p.to_string().into()),
            ),
        ];
        if let Some(v4) = &self.ipv4 {
            let net = format!("{}/{}", v4.network, v4.prefix_len);
            p.push(("ipv4".into(), net.into()));
            p.push(("ipv4_sublen".into(), v4.sublen.into()));
        }
        if !self.same_country.is_empty() {
            p.push(("same_country".into(), self.same_country.clone().into()));
        }
        p.extend([
            ("client_count".into(), self.client_count.into()),
            ("encrypt".into(), self.encrypt.into()),
            ("hello".into(), self.hello.into()),
            ("max_clients".into(), self.max_clients.into()),
            ("min_protocol".into(), self.min_protocol.into()),
            ("tunnel_refresh".into(), self.tunnel_refresh.into()),
        ]);
        // Not written by upstream's registry, but read by its nodes.
        if self.delay_restart != 0 {
            p.push(("delay_restart".into(), self.delay_restart.into()));
        }
        for (k, v) in &self.extra {
            // A name of our own would be written twice.
            if k.is_empty() || KNOWN_KEYS.contains(&k.as_str()) {
                continue;
            }
            let v = match v {
                // Kept text came from valid JSON; anything else is dropped.
                ExtraValue::Json(text) => match serde_json::from_str(text) {
                    Ok(v) => v,
                    Err(_) => continue,
                },
                ExtraValue::Bytes(b) => B64.encode(b).into(),
            };
            p.push((k.clone(), v));
        }
        p
    }

    /// Upstream's `last_config`: the parameters as sorted-key JSON. The
    /// registry bumps the version when this text changes.
    pub fn last_config_text(&self) -> String {
        let mut p = self.params();
        p.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        write_object(&mut out, p.iter().map(|(k, v)| (k, v)));
        out
    }

    /// The JSON text upstream's registry sends to the node holding
    /// `client_cert`, babel HMAC keys encrypted for it.
    pub fn registry_json(&self, client_cert: &X509Ref) -> Result<String, ConfigError> {
        self.registry_json_with(|key| crypto::encrypt_for(client_cert, key))
    }

    fn registry_json_with(
        &self,
        mut encrypt: impl FnMut(&[u8]) -> Result<Vec<u8>, CryptoError>,
    ) -> Result<String, ConfigError> {
        let mut entries = self.params();
        let mut listed = vec![Value::from("version")];
        listed.extend(entries.iter().filter_map(|(k, _)| match self.extra.get(k) {
            Some(ExtraValue::Bytes(_)) => Some(Value::from(k.as_str())),
            _ => None,
        }));
        entries.push((BASE64_LIST_KEY.into(), listed.into()));
        entries.push(("version".into(), B64.encode(&self.version).into()));
        for (name, key) in [
            ("babel_hmac_sign", &self.babel_hmac_sign),
            ("babel_hmac_accept", &self.babel_hmac_accept),
        ] {
            if let Some(key) = key {
                let v = if key.is_empty() {
                    String::new()
                } else {
                    B64.encode(encrypt(key)?)
                };
                entries.push((name.into(), v.into()));
            }
        }
        let mut out = String::new();
        write_object(&mut out, entries.iter().map(|(k, v)| (k, v)));
        Ok(out)
    }

    /// The `getNetworkConfig` answer for the node holding `client_cert`:
    /// [`NetworkConfig::registry_json`], zlib-compressed.
    pub fn encode_for(&self, client_cert: &X509Ref) -> Result<Vec<u8>, ConfigError> {
        compress(self.registry_json(client_cert)?.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use proptest::prelude::*;
    use re6st_testkit::Pki;

    use super::super::{unpack, Ipv4Payload};
    use super::*;
    use crate::prefix::Prefix;

    fn sample(pki: &Pki) -> NetworkConfig {
        let mut c = NetworkConfig::new(crypto::sign_version(&pki.ca_key, 7).unwrap(), 10);
        c.registry_prefix = Some("0000000000000001".parse().unwrap());
        c.crl = [3, 5].into();
        c.hello = 4;
        c.client_count = 3;
        c.max_clients = 6;
        c.tunnel_refresh = 60;
        c.ipv4 = Some(Ipv4Payload {
            network: Ipv4Addr::new(198, 18, 0, 0),
            prefix_len: 16,
            sublen: 8,
        });
        c.same_country = vec!["FR".into()];
        c.babel_hmac_sign = Some(vec![1; 16]);
        c.babel_hmac_accept = Some(Vec::new());
        c.extra = [
            ("future".to_string(), ExtraValue::Json("{\"a\":1}".into())),
            ("raw".to_string(), ExtraValue::Bytes(vec![0, 255])),
        ]
        .into();
        c
    }

    #[test]
    fn upstream_key_order_and_spacing() {
        let pki = Pki::new("2001:db8::/32");
        let mut c = sample(&pki);
        c.extra.clear();
        let json = c.registry_json_with(|_| Ok(b"K".to_vec())).unwrap();
        let version = B64.encode(&c.version);
        assert_eq!(
            json,
            format!(
                "{{\"babel_default\": \"max-rtt-penalty 5000 rtt-max 500 rtt-decay 125\", \
                 \"crl\": [3, 5], \"protocol\": 10, \"registry_prefix\": \"0000000000000001\", \
                 \"ipv4\": \"198.18.0.0/16\", \"ipv4_sublen\": 8, \"same_country\": [\"FR\"], \
                 \"client_count\": 3, \"encrypt\": false, \"hello\": 4, \"max_clients\": 6, \
                 \"min_protocol\": 1, \"tunnel_refresh\": 60, \"\": [\"version\"], \
                 \"version\": \"{version}\", \"babel_hmac_sign\": \"Sw==\", \"babel_hmac_accept\": \"\"}}"
            )
        );
        assert_eq!(
            c.last_config_text(),
            "{\"babel_default\": \"max-rtt-penalty 5000 rtt-max 500 rtt-decay 125\", \
             \"client_count\": 3, \"crl\": [3, 5], \"encrypt\": false, \"hello\": 4, \
             \"ipv4\": \"198.18.0.0/16\", \"ipv4_sublen\": 8, \"max_clients\": 6, \
             \"min_protocol\": 1, \"protocol\": 10, \"registry_prefix\": \"0000000000000001\", \
             \"same_country\": [\"FR\"], \"tunnel_refresh\": 60}"
        );
    }

    #[test]
    fn round_trip_with_encrypted_keys() {
        let pki = Pki::new("2001:db8::/32");
        let node = pki.node("1/16", 1);
        let c = sample(&pki);
        let blob = c.encode_for(&node.cert).unwrap();
        let d = NetworkConfig::from_registry(&blob, &node.key, &pki.ca).unwrap();
        assert_eq!(d, c);
        assert_eq!(d.verify_version(&pki.ca).unwrap(), 7);
        // Another node cannot read the babel keys.
        let other = pki.node("2/16", 2);
        assert!(NetworkConfig::decode(&blob, &other.key).is_err());
        // A version signed by another CA is refused.
        let rogue = Pki::new("2001:db8::/32");
        assert!(NetworkConfig::from_registry(&blob, &node.key, &rogue.ca).is_err());
    }

    #[test]
    fn tampered_blobs_are_refused() {
        let pki = Pki::new("2001:db8::/32");
        let node = pki.node("1/16", 1);
        let c = sample(&pki);
        let json = c.registry_json(&node.cert).unwrap();
        // Another version number with the old signature.
        let mut forged = c.clone();
        forged.version[0] ^= 1;
        let blob = forged.encode_for(&node.cert).unwrap();
        assert!(NetworkConfig::from_registry(&blob, &node.key, &pki.ca).is_err());
        // A babel key ciphertext longer than the modulus.
        let mut m = unpack(&compress(json.as_bytes()).unwrap()).unwrap();
        let mut ct = B64.decode(m["babel_hmac_sign"].as_str().unwrap()).unwrap();
        ct.push(0);
        m.insert("babel_hmac_sign".into(), B64.encode(ct).into());
        assert!(NetworkConfig::from_map(m, &node.key).is_err());
    }

    #[test]
    fn postcard_friendly_serde() {
        let pki = Pki::new("2001:db8::/32");
        let c = sample(&pki);
        let bytes = postcard::to_allocvec(&c).unwrap();
        assert_eq!(postcard::from_bytes::<NetworkConfig>(&bytes).unwrap(), c);
    }

    fn arb_config() -> impl Strategy<Value = NetworkConfig> {
        let text = "\\PC{0,16}";
        (
            (
                proptest::collection::vec(any::<u8>(), 0..80),
                any::<u32>(),
                any::<u32>(),
                proptest::option::of((any::<u128>(), 0u8..=128)),
                proptest::collection::btree_set(any::<u64>(), 0..8),
                text,
                any::<[u32; 5]>(),
                any::<bool>(),
            ),
            (
                proptest::option::of((any::<[u8; 4]>(), 0u8..=32, 0u8..=32)),
                proptest::collection::vec("[A-Z]{2}", 0..3),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
                proptest::collection::btree_map(
                    "x[a-z_]{0,6}",
                    prop_oneof![
                        proptest::collection::vec(any::<u8>(), 0..8).prop_map(ExtraValue::Bytes),
                        text.prop_map(|s| ExtraValue::Json(Value::from(s).to_string())),
                        any::<i64>().prop_map(|n| ExtraValue::Json(n.to_string())),
                    ],
                    0..3,
                ),
            ),
        )
            .prop_map(
                |(
                    (version, protocol, min_protocol, prefix, crl, babel_default, n, encrypt),
                    (ipv4, same_country, sign, accept, extra),
                )| NetworkConfig {
                    version,
                    protocol,
                    min_protocol,
                    registry_prefix: prefix.map(|(v, len)| {
                        let v = if len == 0 {
                            0
                        } else {
                            v >> (128 - u32::from(len))
                        };
                        Prefix::new(v, len).unwrap()
                    }),
                    crl,
                    babel_default,
                    hello: n[0],
                    client_count: n[1],
                    max_clients: n[2],
                    tunnel_refresh: n[3],
                    encrypt,
                    ipv4: ipv4.map(|(ip, prefix_len, sublen)| Ipv4Payload {
                        network: ip.into(),
                        prefix_len,
                        sublen,
                    }),
                    same_country,
                    babel_hmac_sign: sign,
                    babel_hmac_accept: accept,
                    delay_restart: n[4],
                    extra,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn blob_round_trip(c in arb_config()) {
            thread_local! {
                static PKI: (Pki, re6st_testkit::NodeId) = {
                    let pki = Pki::new("2001:db8::/32");
                    let node = pki.node("1/16", 1);
                    (pki, node)
                };
            }
            PKI.with(|(_, node)| {
                let blob = c.encode_for(&node.cert).unwrap();
                let json = inflate_text(&blob);
                prop_assert!(json.is_ascii());
                let d = NetworkConfig::decode(&blob, &node.key).unwrap();
                prop_assert_eq!(&d, &c);
                let bytes = postcard::to_allocvec(&d).unwrap();
                prop_assert_eq!(postcard::from_bytes::<NetworkConfig>(&bytes).unwrap(), d);
                Ok(())
            })?;
        }
    }

    fn inflate_text(blob: &[u8]) -> String {
        String::from_utf8(super::super::inflate(blob).unwrap()).unwrap()
    }

    #[test]
    fn unusable_extras_are_dropped_not_fatal() {
        let mut c = NetworkConfig::new(vec![1], 10);
        c.extra = BTreeMap::from([
            ("bad".to_string(), ExtraValue::Json("{".into())),
            ("hello".to_string(), ExtraValue::Json("1".into())),
            ("".to_string(), ExtraValue::Bytes(vec![1])),
            ("ok".to_string(), ExtraValue::Bytes(vec![1])),
        ]);
        let json = c.registry_json_with(|_| Ok(Vec::new())).unwrap();
        assert!(!json.contains("bad"));
        assert_eq!(json.matches("\"hello\"").count(), 1);
        assert!(json.contains("\"\": [\"version\", \"ok\"]"), "{json}");
        let key = re6st_testkit::rsa_key(1024);
        let d = NetworkConfig::decode(&compress(json.as_bytes()).unwrap(), &key).unwrap();
        assert_eq!(d.hello, 15);
        assert_eq!(
            d.extra,
            BTreeMap::from([("ok".to_string(), ExtraValue::Bytes(vec![1]))])
        );
    }
}
