//! A network configuration blob built by our code is read by upstream's
//! node cache exactly as one from upstream's registry would be.

use re6st_proto::crypto;
use re6st_proto::netconfig::{pack, NetworkConfig};
use re6st_testkit::{run_upstream, temp_file, Pki};

#[test]
fn upstream_node_cache_reads_our_blob() {
    let pki = Pki::new("2001:db8::/32");
    let node = pki.node("1/16", 1);
    let config = NetworkConfig {
        version: crypto::sign_version(&pki.ca_key, 42).unwrap(),
        protocol: 10,
        min_protocol: 1,
        registry_prefix: Some("0000000000000001".parse().unwrap()),
        crl: [3, 17].into(),
        babel_default: "max-rtt-penalty 5000 rtt-max 500 rtt-decay 125".into(),
        hello: 4,
        client_count: 3,
        max_clients: 6,
        tunnel_refresh: 60,
        encrypt: true,
        ipv4: Some(("198.18.0.0/16".into(), 8)),
        same_country: vec!["FR".into(), "DE".into()],
        babel_hmac_sign: Some(b"0123456789abcdef".to_vec()),
        babel_hmac_accept: Some(Vec::new()),
        delay_restart: 0,
        extra: Default::default(),
    };
    let blob = pack(&config.to_map(&node.cert).unwrap()).unwrap();
    let blob_path = temp_file("netconfig.bin", &blob);
    let ca = temp_file("ca.pem", &pki.ca_pem());
    let key = temp_file("key.pem", &node.key_pem());
    let cert = temp_file("cert.pem", &node.cert_pem());
    // Drive upstream's Cache.updateConfig with a registry stub answering
    // our blob, then print what it stored.
    let script = r#"
import sys, json
from re6st import x509
from re6st.cache import Cache
blob, ca, key, cert = sys.argv[1:5]
c = Cache.__new__(Cache)
c._db = c._open(':memory:')
c._prefix = '0000000000000010'
me = x509.Cert(ca, key, cert)
c._decrypt = me.decrypt
class Registry:
    def getNetworkConfig(self, prefix):
        return open(blob, 'rb').read()
c._registry = Registry()
assert c.updateConfig() is not None, "upstream rejected the configuration"
me.verifyVersion(c.version)
out = {k: getattr(c, k) for k in ('protocol', 'min_protocol', 'registry_prefix', 'babel_default',
    'hello', 'client_count', 'max_clients', 'tunnel_refresh', 'encrypt', 'ipv4', 'ipv4_sublen', 'same_country')}
out['crl'] = sorted(c.crl)
out['version'] = c.version.hex()
out['babel_hmac_sign'] = c.babel_hmac_sign.hex()
out['babel_hmac_accept'] = c.babel_hmac_accept
print(json.dumps(out, sort_keys=True))
"#;
    let out = run_upstream(
        script,
        &[
            blob_path.to_str().unwrap(),
            ca.to_str().unwrap(),
            key.to_str().unwrap(),
            cert.to_str().unwrap(),
        ],
        b"",
    );
    for p in [blob_path, ca, key, cert] {
        std::fs::remove_file(p).ok();
    }
    let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let want = serde_json::json!({
        "protocol": 10, "min_protocol": 1, "registry_prefix": "0000000000000001",
        "babel_default": "max-rtt-penalty 5000 rtt-max 500 rtt-decay 125",
        "hello": 4, "client_count": 3, "max_clients": 6, "tunnel_refresh": 60, "encrypt": true,
        "ipv4": "198.18.0.0/16", "ipv4_sublen": 8, "same_country": ["FR", "DE"],
        "crl": [3, 17], "version": hex::encode(&config.version),
        "babel_hmac_sign": hex::encode(b"0123456789abcdef"), "babel_hmac_accept": "",
    });
    assert_eq!(got, want);
}
