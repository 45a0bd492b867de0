//! Our registry against upstream re6stnet 0.642 code: `re6st-conf`
//! registers with it, `RegistryClient` talks to it, and a database written
//! by the upstream registry is served unchanged.

mod common;

use std::path::Path;

use common::*;
use re6st_testkit::{run_upstream, Pki};
use rusqlite::types::Value;

const CLIENT_SCRIPT: &str = r#"
import sys, json, zlib, base64
from re6st import registry, x509
ca, key, crt, url = sys.argv[1:5]
cert = x509.Cert(ca, key, crt)
c = registry.RegistryClient(url, cert)
prefix = cert.prefix
out = {'prefix': prefix}
cfg = c.getNetworkConfig(prefix)
assert cfg, 'getNetworkConfig failed (bad HMAC?)'
cfg = json.loads(zlib.decompress(cfg))
version = base64.b64decode(cfg['version'])
cert.verifyVersion(version)
out['version'] = version[0]
sign = cfg.pop('babel_hmac_sign', None)
out['sign'] = cert.decrypt(base64.b64decode(sign)).hex() if sign else None
accept = cfg.pop('babel_hmac_accept', None)
out['accept'] = (cert.decrypt(base64.b64decode(accept)).hex() if accept else accept)
out['config'] = cfg
pem = c.renewCertificate(prefix)
assert pem, 'renewCertificate failed'
out['renew'] = pem.decode()
ca_pem = c.getCa()
assert ca_pem, 'getCa failed'
out['ca'] = ca_pem.decode()
dh = c.getDh(prefix)
assert dh, 'getDh failed'
out['dh'] = dh.decode()
print(json.dumps(out))
"#;

fn client(dir: &Path, url: &str) -> serde_json::Value {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_owned();
    let out = run_upstream(
        CLIENT_SCRIPT,
        &[&p("ca.crt"), &p("cert.key"), &p("cert.crt"), url],
        b"",
    );
    serde_json::from_slice(&out).unwrap()
}

fn subnet_of(dir: &Path) -> String {
    let pem = std::fs::read(dir.join("cert.crt")).unwrap();
    let cert = openssl::x509::X509::from_pem(&pem).unwrap();
    re6st_proto::cert::common_name(&cert).unwrap()
}

#[test]
fn upstream_conf_registers_anonymously_and_with_token() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("conf");
    let server = Server::start(&pki, &dir, Options::default());

    // Anonymous: a /20 (anonymous-prefix-length) after the network.
    let node1 = dir.join("node1");
    std::fs::create_dir_all(&node1).unwrap();
    let (ok, out) = re6st_conf(&node1, &["--registry", &server.url, "--anonymous"]);
    assert!(ok, "{out}");
    assert!(out.contains("Setup complete"), "{out}");
    let cn1 = subnet_of(&node1);
    assert!(cn1.ends_with("/20"), "{cn1}");

    // With a token: ask for it (re6st-conf then waits for it on stdin,
    // which is closed), read it from the mbox, and register with it.
    let node2 = dir.join("node2");
    std::fs::create_dir_all(&node2).unwrap();
    let (ok, out) = re6st_conf(
        &node2,
        &["--registry", &server.url, "--email", "n2@example.com"],
    );
    assert!(!ok, "{out}");
    let token = last_token(&server.mbox);
    assert_eq!(token.len(), 8);
    let (ok, out) = re6st_conf(&node2, &["--registry", &server.url, "--token", &token]);
    assert!(ok, "{out}");
    let cn2 = subnet_of(&node2);
    assert!(cn2.ends_with("/16"), "{cn2}");
    assert_ne!(cn1, cn2);

    // The token is spent.
    let node3 = dir.join("node3");
    std::fs::create_dir_all(&node3).unwrap();
    let (ok, out) = re6st_conf(&node3, &["--registry", &server.url, "--token", &token]);
    assert!(!ok && out.contains("invalid or expired token"), "{out}");

    // upstream's fingerprint check of our CA passes.
    let fp = hex::encode(pki.ca.digest(openssl::hash::MessageDigest::sha1()).unwrap());
    let (ok, out) = re6st_conf(
        &node3,
        &[
            "--registry",
            &server.url,
            "--ca-only",
            "--fingerprint",
            &format!("sha1:{fp}"),
        ],
    );
    assert!(ok, "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn upstream_client_verifies_our_hmacs() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("client");
    let server = Server::start(&pki, &dir, Options::default());
    let node = dir.join("node");
    std::fs::create_dir_all(&node).unwrap();
    let (ok, out) = re6st_conf(&node, &["--registry", &server.url, "--anonymous"]);
    assert!(ok, "{out}");

    let r = client(&node, &server.url);
    let cert_pem = std::fs::read_to_string(node.join("cert.crt")).unwrap();
    assert_eq!(
        r["renew"],
        cert_pem.as_str(),
        "fresh certificate kept as is"
    );
    assert_eq!(r["ca"], String::from_utf8(pki.ca_pem()).unwrap().as_str());
    assert_eq!(r["dh"], re6st_registry::init::FFDHE2048_PEM);
    let cfg = &r["config"];
    // The first node registered is the registry's own node.
    assert_eq!(cfg["registry_prefix"], r["prefix"]);
    assert_eq!(cfg["protocol"], re6st_proto::PROTOCOL);
    assert_eq!(cfg["crl"], serde_json::json!([]));
    assert_eq!(cfg["max_clients"], 20);
    assert_eq!(cfg[""], serde_json::json!(["version"]));
    // The babel key nodes sign with is the one in the database.
    let db = dump_db(&server.db);
    let hmac0 = db
        .iter()
        .find_map(|l| l.strip_prefix("config: Text(\"babel_hmac0\")|Blob("))
        .expect("babel_hmac0 in db");
    let bytes: Vec<u8> = hmac0
        .trim_end_matches(')')
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|b| b.parse().unwrap())
        .collect();
    assert_eq!(r["sign"], hex::encode(bytes).as_str());
    assert_eq!(r["accept"], serde_json::Value::Null);

    // Twice in a row: sessions ratchet and keep working.
    let again = client(&node, &server.url);
    assert_eq!(again["version"], r["version"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts the upstream registry on `dir`, lets `f` use it, stops it.
fn with_upstream_registry(dir: &Path, port: u16, f: impl FnOnce(&str)) {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_owned();
    let mut child = std::process::Command::new(re6st_testkit::upstream_python())
        .arg("-c")
        .arg("import sys; from re6st.cli.registry import main; sys.argv[0] = 're6st-registry'; main()")
        .args(["--port", &port.to_string(), "-4", "127.0.0.1", "-6", ""])
        .args(["--db", &p("registry.db"), "--ca", &p("ca.crt"), "--key", &p("ca.key")])
        .args(["--dh", &p("dh.pem"), "-l", &p("upstream.log"), "-r", &p("run")])
        .args(["--anonymous-prefix-length", "20", "--mailhost", &p("mail.mbox"), "-v", "3"])
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if up {
        f(&url);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        up,
        "upstream registry did not start; see {}",
        p("upstream.log")
    );
}

/// The value of a row of the `config` table.
fn config_row(db: &Path, name: &str) -> Value {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT value FROM config WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .unwrap_or_else(|e| panic!("config row {name}: {e}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn database_of_upstream_registry_is_served_unchanged() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("updb");
    write_pki(&pki, &dir);
    std::fs::create_dir_all(dir.join("run")).unwrap();
    let nodes: Vec<_> = (0..3).map(|i| dir.join(format!("node{i}"))).collect();
    with_upstream_registry(&dir, free_port(), |url| {
        for (i, n) in nodes.iter().enumerate() {
            std::fs::create_dir_all(n).unwrap();
            let (ok, out) = if i == 1 {
                let (ok, out) = re6st_conf(n, &["--registry", url, "--email", "x@example.com"]);
                assert!(!ok, "{out}");
                let token = last_token(&dir.join("mail.mbox"));
                re6st_conf(n, &["--registry", url, "--token", &token])
            } else {
                re6st_conf(n, &["--registry", url, "--anonymous"])
            };
            assert!(ok, "{out}");
        }
        // A pending token too.
        let pending = dir.join("pending");
        std::fs::create_dir_all(&pending).unwrap();
        let (ok, out) = re6st_conf(&pending, &["--registry", url, "--email", "p@example.com"]);
        assert!(!ok, "{out}");
    });
    let before = dump_db(&dir.join("registry.db"));
    assert!(
        before.iter().any(|l| l.starts_with("token: ")),
        "{before:#?}"
    );

    let db = dir.join("registry.db");
    let (version_before, last_before) =
        (config_row(&db, "version"), config_row(&db, "last_config"));

    let server = Server::start(&pki, &dir, Options::default());
    let after = dump_db(&server.db);
    // Opening it changes nothing (same schema, nothing expired) but the
    // network configuration's two rows, compared below.
    let others = |v: &[String]| -> Vec<String> {
        v.iter()
            .filter(|l| {
                !l.starts_with("config: Text(\"version\")")
                    && !l.starts_with("config: Text(\"last_config\")")
            })
            .cloned()
            .collect()
    };
    assert_eq!(others(&before), others(&after));
    // last_config, upstream's `json.dumps(..., sort_keys=True)` of the
    // published parameters: ours writes the same text to the byte, but
    // for the protocol number (upstream 0.642 publishes its own, 8).
    let upstream_protocol = String::from_utf8(run_upstream(
        "from re6st import version; print(version.protocol)",
        &[],
        b"",
    ))
    .unwrap();
    let upstream_protocol: u32 = upstream_protocol.trim().parse().unwrap();
    // Ours is newer, hence one new version below; with equal protocols no
    // row at all would change, and the check below would be `before == after`.
    assert_ne!(
        upstream_protocol,
        re6st_proto::PROTOCOL,
        "same protocol as upstream: opening must change nothing"
    );
    let Value::Text(last_before) = last_before else {
        panic!("upstream's last_config is not text: {last_before:?}")
    };
    let field = |p: u32| format!("\"protocol\": {p}");
    assert_eq!(
        last_before.matches(&field(upstream_protocol)).count(),
        1,
        "{last_before}"
    );
    let expected = last_before.replace(&field(upstream_protocol), &field(re6st_proto::PROTOCOL));
    assert_eq!(config_row(&server.db, "last_config"), Value::Text(expected));
    // So the network version goes up by exactly one, signed by the same CA
    // as upstream's.
    let version = |v: Value| match v {
        Value::Blob(b) => re6st_proto::crypto::verify_version(&pki.ca, &b).unwrap(),
        v => panic!("version is not a blob: {v:?}"),
    };
    let v0 = version(version_before);
    assert!(v0 >= 1, "upstream published no version");
    assert_eq!(version(config_row(&server.db, "version")), v0 + 1);
    for n in &nodes {
        let r = client(n, &server.url);
        let pem = std::fs::read_to_string(n.join("cert.crt")).unwrap();
        assert_eq!(
            r["renew"],
            pem.as_str(),
            "certificate of {} intact",
            n.display()
        );
    }
    // A new node gets a prefix distinct from all the others.
    let new = dir.join("new");
    std::fs::create_dir_all(&new).unwrap();
    let (ok, out) = re6st_conf(&new, &["--registry", &server.url, "--anonymous"]);
    assert!(ok, "{out}");
    let mut cns: Vec<String> = nodes.iter().chain([&new]).map(|n| subnet_of(n)).collect();
    cns.sort();
    cns.dedup();
    assert_eq!(cns.len(), 4);
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}
