//! Cross-checks of the registry session and the network configuration
//! against upstream re6stnet:
//!
//! * our client session and decoder against upstream's real registry;
//! * upstream's node cache reading blobs from our encoder, and our encoder
//!   writing the JSON upstream's registry code writes;
//! * upstream's `RegistryClient` talking to a small HTTP server built on
//!   our server-side session.
//!
//! Everything listens on 127.0.0.1 only; every process and thread is
//! stopped by a guard, also when an assertion fails, and every wait is
//! bounded.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509NameBuilder, X509Req, X509};
use re6st_proto::netconfig::{ExtraValue, Ipv4Payload, NetworkConfig};
use re6st_proto::rpc::{
    hello_target, parse_target, request_target, ClientSession, Rpc, RpcError, Sessions, HMAC_HEADER,
};
use re6st_proto::{cert, crypto};
use re6st_testkit::upstream_registry::UpstreamRegistry;
use re6st_testkit::{run_upstream, temp_file, upstream_python, NodeId, Pki};
use serde_json::{json, Value};

const IO_TIMEOUT: Duration = Duration::from_secs(30);

// --- a minimal HTTP/1.0 client -------------------------------------------

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_head(r: &mut impl BufRead) -> (String, Vec<(String, String)>) {
    let mut first = String::new();
    r.read_line(&mut first).expect("read start line");
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("read header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').expect("header line");
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    (first.trim_end().to_owned(), headers)
}

fn get(port: u16, target: &str, hmac: Option<&str>) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut req = format!("GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    if let Some(h) = hmac {
        req.push_str(&format!("{HMAC_HEADER}: {h}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    let mut r = BufReader::new(s);
    let (status_line, headers) = read_head(&mut r);
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut body = Vec::new();
    r.read_to_end(&mut body).expect("read body");
    Answer {
        status,
        headers,
        body,
    }
}

// --- a minimal HTTP server on loopback, stopped on drop ------------------

struct Reply {
    status: u16,
    body: Vec<u8>,
    hmac: Option<String>,
}

struct TestServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Serves each request with `handle(target, Re6stHMAC header)`.
    fn start(handle: impl Fn(&str, Option<&str>) -> Reply + Send + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                // One request per connection; errors only drop it.
                let _ = serve(conn, &handle);
            }
        });
        TestServer {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn serve(conn: TcpStream, handle: &impl Fn(&str, Option<&str>) -> Reply) -> std::io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let (line, headers) = read_head(&mut r);
    let target = line.split(' ').nth(1).unwrap_or("");
    let hmac = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(HMAC_HEADER))
        .map(|(_, v)| v.as_str());
    let reply = handle(target, hmac);
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    if let Some(h) = &reply.hmac {
        head.push_str(&format!("{HMAC_HEADER}: {h}\r\n"));
    }
    head.push_str("\r\n");
    let mut w = conn;
    w.write_all(head.as_bytes())?;
    w.write_all(&reply.body)?;
    w.flush()
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop up so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// --- upstream Python with a deadline --------------------------------------

/// A child process killed when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a Python script with upstream importable; fails after `limit`.
fn run_upstream_bounded(script: &str, args: &[&str], limit: Duration) -> Vec<u8> {
    let out = TempPath(temp_file("py.out", b""));
    let err = TempPath(temp_file("py.err", b""));
    let child = Command::new(upstream_python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out.0).unwrap())
        .stderr(std::fs::File::create(&err.0).unwrap())
        .spawn()
        .expect("spawn upstream python");
    let mut child = ChildGuard(child);
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait python") {
            break status;
        }
        assert!(
            Instant::now() < end,
            "upstream python timed out:\n{}",
            std::fs::read_to_string(&err.0).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "upstream python failed ({status}):\n{}",
        std::fs::read_to_string(&err.0).unwrap_or_default()
    );
    std::fs::read(&out.0).unwrap()
}

/// A temporary file removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str, data: &[u8]) -> TempPath {
        TempPath(temp_file(tag, data))
    }
    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// --- upstream's node cache as the reference decoder ----------------------

/// Feeds a blob to upstream's `Cache.updateConfig` (through a registry
/// stub) and prints what it stored.
const CACHE_DECODE: &str = r#"
import sys, json
from re6st import x509
from re6st.cache import Cache
blob, ca, key, cert = sys.argv[1:5]
c = Cache.__new__(Cache)
c._db = c._open(':memory:')
me = x509.Cert(ca, key, cert)
c._prefix = me.prefix
c._decrypt = me.decrypt
class Registry:
    def getNetworkConfig(self, prefix):
        assert prefix == me.prefix
        return open(blob, 'rb').read()
c._registry = Registry()
assert c.updateConfig() is not None, "upstream rejected the configuration"
me.verifyVersion(c.version)
def key(v):
    return v.hex() if isinstance(v, bytes) else v
out = {k: getattr(c, k, None) for k in ('protocol', 'min_protocol', 'registry_prefix',
    'babel_default', 'hello', 'client_count', 'max_clients', 'tunnel_refresh', 'encrypt',
    'ipv4', 'ipv4_sublen', 'delay_restart')}
out['same_country'] = list(c.same_country)
out['crl'] = sorted(c.crl)
out['version'] = c.version.hex()
out['babel_hmac_sign'] = key(getattr(c, 'babel_hmac_sign', None))
out['babel_hmac_accept'] = key(getattr(c, 'babel_hmac_accept', None))
print(json.dumps(out, sort_keys=True))
"#;

/// The values of [`CACHE_DECODE`] for one of our decoded configurations.
fn cache_values(c: &NetworkConfig) -> Value {
    let key = |k: &Option<Vec<u8>>| match k {
        None => Value::Null,
        Some(k) if k.is_empty() => json!(""),
        Some(k) => json!(hex::encode(k)),
    };
    json!({
        "protocol": c.protocol, "min_protocol": c.min_protocol,
        "registry_prefix": c.registry_prefix.map(|p| p.to_string()),
        "babel_default": c.babel_default, "hello": c.hello, "client_count": c.client_count,
        "max_clients": c.max_clients, "tunnel_refresh": c.tunnel_refresh, "encrypt": c.encrypt,
        "ipv4": c.ipv4.map(|v| format!("{}/{}", v.network, v.prefix_len)),
        "ipv4_sublen": c.ipv4.map(|v| v.sublen), "delay_restart": c.delay_restart,
        "same_country": c.same_country, "crl": c.crl, "version": hex::encode(&c.version),
        "babel_hmac_sign": key(&c.babel_hmac_sign), "babel_hmac_accept": key(&c.babel_hmac_accept),
    })
}

fn upstream_cache_decode(blob: &[u8], ca: &X509, key: &PKey<Private>, cert: &X509) -> Value {
    let files = [
        TempPath::new("netconfig.bin", blob),
        TempPath::new("ca.pem", &ca.to_pem().unwrap()),
        TempPath::new("key.pem", &key.private_key_to_pem_pkcs8().unwrap()),
        TempPath::new("cert.pem", &cert.to_pem().unwrap()),
    ];
    let args: Vec<&str> = files.iter().map(TempPath::arg).collect();
    serde_json::from_slice(&run_upstream(CACHE_DECODE, &args, b"")).unwrap()
}

/// Replaces the (randomly padded) babel key ciphertexts of registry JSON.
fn mask_ciphertexts(json: &str) -> String {
    let mut out = json.to_owned();
    for k in ["babel_hmac_sign", "babel_hmac_accept"] {
        let tag = format!("\"{k}\": \"");
        if let Some(start) = out.find(&tag).map(|i| i + tag.len()) {
            let len = out[start..].find('"').expect("end of string");
            if len > 0 {
                out.replace_range(start..start + len, "<ciphertext>");
            }
        }
    }
    out
}

fn inflate_text(blob: &[u8]) -> String {
    String::from_utf8(re6st_proto::netconfig::inflate(blob).unwrap()).unwrap()
}

fn upstream_protocol() -> u32 {
    let out = run_upstream(
        "from re6st import version; print(version.protocol)",
        &[],
        b"",
    );
    String::from_utf8(out).unwrap().trim().parse().unwrap()
}

// --- (a) our client against upstream's registry ---------------------------

fn csr(key: &PKey<Private>) -> Vec<u8> {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "ignored").unwrap();
    let mut req = X509Req::builder().unwrap();
    req.set_subject_name(&name.build()).unwrap();
    req.set_pubkey(key).unwrap();
    req.sign(key, MessageDigest::sha256()).unwrap();
    req.build().to_pem().unwrap()
}

/// Values upstream's registry keeps in its database, as hex.
fn registry_db_config(db: &Path) -> BTreeMap<String, String> {
    let script = r#"
import sqlite3, sys, json
db = sqlite3.connect(sys.argv[1])
out = {}
for k, v in db.execute("SELECT name, value FROM config"):
    out[k] = v.hex() if isinstance(v, bytes) else str(v)
print(json.dumps(out))
"#;
    serde_json::from_slice(&run_upstream(script, &[db.to_str().unwrap()], b"")).unwrap()
}

struct Node<'a> {
    port: u16,
    cn: String,
    ca: &'a X509,
    key: &'a PKey<Private>,
    session: ClientSession,
    hellos: u32,
}

impl Node<'_> {
    fn hello(&mut self) {
        let answer = get(
            self.port,
            &hello_target(&self.cn, re6st_proto::PROTOCOL).unwrap(),
            None,
        );
        assert_eq!(answer.status, 200);
        self.session
            .accept_hello(&answer.body, self.ca, self.key)
            .unwrap();
        self.hellos += 1;
    }

    /// A session call, checked end to end; returns the body.
    fn call(&mut self, rpc: Rpc, args: &[(&str, &str)]) -> Vec<u8> {
        if self.session.needs_hello() {
            self.hello();
        }
        let mut all = vec![("cn", self.cn.as_str())];
        all.extend_from_slice(args);
        let target = request_target(rpc, &all).unwrap();
        let signed = self.session.sign(&target).unwrap();
        let answer = get(self.port, &target, Some(&signed.header));
        assert!(
            matches!(answer.status, 200 | 204),
            "{target}: {}",
            answer.status
        );
        self.session
            .verify_response(
                &signed,
                &answer.body,
                answer.header(HMAC_HEADER).map(str::as_bytes),
            )
            .unwrap_or_else(|e| panic!("{target}: {e}"));
        answer.body
    }
}

#[test]
fn our_client_session_with_upstream_registry() {
    let pki = Pki::new("2001:db8::/32");
    let reg = UpstreamRegistry::start(
        &pki,
        &[
            "--anonymous-prefix-length",
            "16",
            "--hello",
            "4",
            "--client-count",
            "3",
            "--max-clients",
            "5",
            "--tunnel-refresh",
            "60",
            "--ipv4",
            "10.42.0.0/16",
            "8",
        ],
    );
    let port = reg.port;

    // Anonymous registration: an open call, query built from the table.
    let key = re6st_testkit::rsa_key(2048);
    let req_pem = String::from_utf8(csr(&key)).unwrap();
    let target =
        request_target(Rpc::RequestCertificate, &[("token", ""), ("req", &req_pem)]).unwrap();
    let answer = get(port, &target, None);
    assert_eq!(answer.status, 200, "{}", reg.log());
    let my_cert = X509::from_pem(&answer.body).unwrap();
    let cn = cert::node_prefix(&my_cert).unwrap().to_string();
    assert_eq!(cn.len(), 16);

    let ca_answer = get(port, &request_target(Rpc::GetCa, &[]).unwrap(), None);
    assert_eq!(ca_answer.status, 200);
    assert_eq!(
        X509::from_pem(&ca_answer.body).unwrap().to_der().unwrap(),
        pki.ca.to_der().unwrap()
    );

    // A hello answer is refused against another CA.
    let rogue = Pki::new("2001:db8::/32");
    let hello = get(
        port,
        &hello_target(&cn, re6st_proto::PROTOCOL).unwrap(),
        None,
    );
    assert!(matches!(
        ClientSession::default().accept_hello(&hello.body, &rogue.ca, &key),
        Err(RpcError::HelloNotSigned)
    ));

    let mut node = Node {
        port,
        cn: cn.clone(),
        ca: &pki.ca,
        key: &key,
        session: ClientSession::default(),
        hellos: 0,
    };
    let blob = node.call(Rpc::GetNetworkConfig, &[]);
    let config = NetworkConfig::from_registry(&blob, &key, &pki.ca).unwrap();
    let dh = node.call(Rpc::GetDh, &[]);
    assert_eq!(dh, std::fs::read(reg.dir.join("dh.pem")).unwrap());
    let renewed = node.call(Rpc::RenewCertificate, &[]);
    assert_eq!(
        renewed, answer.body,
        "not due for renewal: same certificate"
    );
    // One hello, then the ratchet kept both sides in step.
    assert_eq!(node.hellos, 1);

    // What the registry was configured with, and what it keeps in its db.
    assert_eq!(config.protocol, upstream_protocol());
    assert_eq!(
        (
            config.hello,
            config.client_count,
            config.max_clients,
            config.tunnel_refresh
        ),
        (4, 3, 5, 60)
    );
    assert_eq!(
        config.ipv4,
        Some(Ipv4Payload {
            network: Ipv4Addr::new(10, 42, 0, 0),
            prefix_len: 16,
            sublen: 8
        })
    );
    assert_eq!(
        config.registry_prefix.map(|p| p.to_string()),
        Some(cn.clone())
    );
    assert!(config.extra.is_empty(), "{:?}", config.extra);
    let db = registry_db_config(&reg.dir.join("registry.db"));
    assert_eq!(hex::encode(&config.version), db["version"]);
    assert_eq!(
        config.babel_hmac_sign.as_ref().map(hex::encode).as_deref(),
        Some(db["babel_hmac0"].as_str())
    );
    assert_eq!(config.babel_hmac_accept, None);

    // Our decoding is upstream's node cache's.
    assert_eq!(
        upstream_cache_decode(&blob, &pki.ca, &key, &my_cert),
        cache_values(&config)
    );
    // And our encoder writes the JSON the registry wrote.
    assert_eq!(
        mask_ciphertexts(&config.registry_json(&my_cert).unwrap()),
        mask_ciphertexts(&inflate_text(&blob))
    );

    // A replayed request is refused, and does not disturb the session.
    let target = request_target(Rpc::GetDh, &[("cn", &cn)]).unwrap();
    let signed = node.session.sign(&target).unwrap();
    assert_eq!(get(port, &target, Some(&signed.header)).status, 200);
    assert_eq!(get(port, &target, Some(&signed.header)).status, 400);
    node.call(Rpc::GetDh, &[]);
    assert_eq!(node.hellos, 1);

    // A request whose HMAC does not cover what is sent is refused; our
    // session is then out of step, so we reset it and say hello again.
    let signed = node.session.sign(&target).unwrap();
    let other = request_target(Rpc::GetNetworkConfig, &[("cn", &cn)]).unwrap();
    assert_eq!(get(port, &other, Some(&signed.header)).status, 400);
    assert_eq!(get(port, &target, None).status, 400, "no HMAC at all");
    node.session.reset();
    node.call(Rpc::GetDh, &[]);
    assert_eq!(node.hellos, 2);

    // A tampered answer fails verification and closes our session.
    let signed = node.session.sign(&target).unwrap();
    let mut answer = get(port, &target, Some(&signed.header));
    answer.body.push(b'\n');
    assert!(node
        .session
        .verify_response(
            &signed,
            &answer.body,
            answer.header(HMAC_HEADER).map(str::as_bytes)
        )
        .is_err());
    assert!(node.session.needs_hello());
    node.call(Rpc::GetNetworkConfig, &[]);
    assert_eq!(node.hellos, 3);
}

// --- (b) upstream's code reading what our server side writes ---------------

fn full_config(pki: &Pki, protocol: u32) -> NetworkConfig {
    let mut c = NetworkConfig::new(crypto::sign_version(&pki.ca_key, 1).unwrap(), protocol);
    c.registry_prefix = Some("0000000000000001".parse().unwrap());
    c.crl = [3, 17, 1 << 40].into();
    c.hello = 4;
    c.client_count = 3;
    c.max_clients = 6;
    c.tunnel_refresh = 60;
    c.encrypt = true;
    c.ipv4 = Some(Ipv4Payload {
        network: Ipv4Addr::new(198, 18, 0, 0),
        prefix_len: 16,
        sublen: 8,
    });
    c.same_country = vec!["FR".into(), "DE".into(), "É\"\\".into()];
    c.babel_hmac_sign = Some(b"0123456789abcdef".to_vec());
    c.babel_hmac_accept = Some(b"fedcba9876543210".to_vec());
    c
}

fn minimal_config(pki: &Pki, protocol: u32) -> NetworkConfig {
    NetworkConfig::new(crypto::sign_version(&pki.ca_key, 1).unwrap(), protocol)
}

#[test]
fn upstream_node_cache_reads_our_blobs() {
    let pki = Pki::new("2001:db8::/32");
    let node = pki.node("1/16", 1);
    let mut with_extras = full_config(&pki, 10);
    with_extras.delay_restart = 5;
    with_extras.babel_hmac_accept = Some(Vec::new());
    with_extras
        .extra
        .insert("future".into(), ExtraValue::Json("[1, 2]".into()));
    for config in [full_config(&pki, 10), minimal_config(&pki, 10), with_extras] {
        let blob = config.encode_for(&node.cert).unwrap();
        assert_eq!(
            upstream_cache_decode(&blob, &pki.ca, &node.key, &node.cert),
            cache_values(&config)
        );
    }
}

/// Runs upstream's `updateNetworkConfig` then `getNetworkConfig` on a
/// registry object holding `params` (no HTTP, no babeld) and prints the
/// blob it answers for the node certificate.
const UPSTREAM_ENCODE: &str = r#"
import argparse, json, sqlite3, sys, threading
from re6st import registry, utils, x509
ca, key, cert, params = sys.argv[1:5]
p = json.loads(params)
s = registry.RegistryServer.__new__(registry.RegistryServer)
s.lock = threading.Lock()
s.db = sqlite3.connect(':memory:', isolation_level=None)
s.db.text_factory = str
utils.sqliteCreateTable(s.db, "config", "name TEXT PRIMARY KEY NOT NULL", "value")
utils.sqliteCreateTable(s.db, "crl", "serial INTEGER PRIMARY KEY NOT NULL", "date INTEGER NOT NULL")
utils.sqliteCreateTable(s.db, "cert", "prefix TEXT PRIMARY KEY NOT NULL", "email TEXT", "cert TEXT")
for serial in p['crl']:
    s.db.execute("INSERT INTO crl VALUES (?, 0)", (serial,))
me = x509.Cert(ca, key, cert)
s.db.execute("INSERT INTO cert VALUES (?, null, ?)", (me.prefix, open(cert, 'rb').read()))
for name, k in zip(registry.BABEL_HMAC, p['babel']):
    if k is not None:
        s.setConfig(name, bytes.fromhex(k))
s.cert = x509.Cert(ca, key)
s.version = b'\0'
s.prefix = p['registry_prefix']
s.sendto = lambda prefix, code: None
s.config = argparse.Namespace(**p['options'])
s.updateNetworkConfig()
sys.stdout.buffer.write(s.getNetworkConfig(me.prefix))
"#;

fn upstream_encode(pki: &Pki, node: &NodeId, c: &NetworkConfig) -> Vec<u8> {
    let params = json!({
        "crl": c.crl,
        "registry_prefix": c.registry_prefix.map(|p| p.to_string()),
        "babel": [
            c.babel_hmac_sign.as_ref().map(hex::encode),
            c.babel_hmac_accept.as_ref().map(hex::encode),
        ],
        "options": {
            "ipv4": c.ipv4.map(|v| (format!("{}/{}", v.network, v.prefix_len), v.sublen)),
            "same_country": c.same_country,
            "client_count": c.client_count, "encrypt": c.encrypt, "hello": c.hello,
            "max_clients": c.max_clients, "min_protocol": c.min_protocol,
            "tunnel_refresh": c.tunnel_refresh,
        },
    });
    // The registry signs with the CA key and decrypts nothing: the node's
    // certificate is only read.
    let files = [
        TempPath::new("ca.pem", &pki.ca_pem()),
        TempPath::new("ca.key", &pki.ca_key_pem()),
        TempPath::new("cert.pem", &node.cert_pem()),
    ];
    let mut args: Vec<&str> = files.iter().map(TempPath::arg).collect();
    let params = params.to_string();
    args.push(&params);
    run_upstream(UPSTREAM_ENCODE, &args, b"")
}

#[test]
fn our_encoder_writes_upstream_registry_json() {
    let pki = Pki::new("2001:db8::/32");
    let node = pki.node("1/16", 1);
    let protocol = upstream_protocol();
    let mut no_prefix = minimal_config(&pki, protocol);
    no_prefix.encrypt = true;
    for config in [full_config(&pki, protocol), no_prefix] {
        let theirs = upstream_encode(&pki, &node, &config);
        // Same JSON text (version 1 signed by the same key is the same
        // bytes: PKCS#1 v1.5 signatures are deterministic).
        assert_eq!(
            mask_ciphertexts(&inflate_text(&theirs)),
            mask_ciphertexts(&config.registry_json(&node.cert).unwrap())
        );
        // Their babel key ciphertexts are what we decrypt.
        let decoded = NetworkConfig::from_registry(&theirs, &node.key, &pki.ca).unwrap();
        assert_eq!(decoded, config);
    }
}

// --- (b) upstream's RegistryClient against our server session -------------

#[derive(Default)]
struct ServerLog {
    targets: Vec<String>,
    hellos: u32,
    rejected: u32,
}

struct OurRegistry {
    sessions: Sessions,
    ca_pem: Vec<u8>,
    ca_key: PKey<Private>,
    node_cert: X509,
    config: NetworkConfig,
    log: ServerLog,
}

impl OurRegistry {
    fn handle(&mut self, target: &str, hmac: Option<&str>) -> Reply {
        self.log.targets.push(target.to_owned());
        let error = |status| Reply {
            status,
            body: Vec::new(),
            hmac: None,
        };
        let Ok(req) = parse_target(target) else {
            return error(400);
        };
        let auth = match req.session() {
            Some(cn) => {
                match self.sessions.authenticate_header(
                    cn,
                    target.as_bytes(),
                    hmac.map(str::as_bytes),
                ) {
                    Ok(a) => Some(a),
                    Err(_) => {
                        self.log.rejected += 1;
                        return error(400);
                    }
                }
            }
            None => None,
        };
        let body = match req.rpc {
            Rpc::Hello => {
                let client = req.arg("client_prefix").unwrap_or_default();
                let protocol = req.arg("protocol").and_then(|p| p.parse().ok());
                let node = cert::node_prefix(&self.node_cert).unwrap().to_string();
                let (Some(protocol), true) = (protocol, client == node) else {
                    return error(400);
                };
                let mut secret = [0u8; 20];
                openssl::rand::rand_bytes(&mut secret).unwrap();
                self.log.hellos += 1;
                self.sessions
                    .answer_hello(client, protocol, &self.node_cert, &self.ca_key, &secret)
                    .unwrap()
            }
            Rpc::GetCa => self.ca_pem.clone(),
            Rpc::GetDh => b"DH PARAMETERS".to_vec(),
            Rpc::GetNetworkConfig => self.config.encode_for(&self.node_cert).unwrap(),
            // Authenticated "nothing": 204 with the HMAC of an empty body.
            Rpc::GetBootstrapPeer => Vec::new(),
            Rpc::GetCountry => {
                // A tampered answer: the HMAC is of another body.
                let auth = auth.expect("session method");
                return Reply {
                    status: 200,
                    body: b"FR".to_vec(),
                    hmac: Some(auth.response_header(b"DE").unwrap()),
                };
            }
            _ => Vec::new(),
        };
        Reply {
            status: if body.is_empty() { 204 } else { 200 },
            hmac: auth.map(|a| a.response_header(&body).unwrap()),
            body,
        }
    }
}

/// Upstream's node: `RegistryClient` calls, then `Cache.updateConfig`
/// through the same client, printing everything it got.
const UPSTREAM_CLIENT: &str = r#"
import json, sys
from re6st import x509
from re6st.cache import Cache
from re6st.registry import RegistryClient
url, ca, key, cert, open_calls = sys.argv[1:6]
me = x509.Cert(ca, key, cert)
client = RegistryClient(url, me)
def text(b):
    return None if b is None else b.decode()
out = {}
out['dh1'] = text(client.getDh(me.prefix))
out['dh2'] = text(client.getDh(me.prefix))
out['ca'] = text(client.getCa())
out['bootstrap'] = text(client.getBootstrapPeer(me.prefix))
out['country'] = text(client.getCountry(me.prefix, 'a b&c=d/é'))
out['dh3'] = text(client.getDh(me.prefix))
out['open'] = [text(getattr(client, name)(**kw)) for name, kw in json.loads(open_calls)]
c = Cache.__new__(Cache)
c._db = c._open(':memory:')
c._prefix = me.prefix
c._decrypt = me.decrypt
c._registry = client
assert c.updateConfig() is not None, "upstream rejected the configuration"
me.verifyVersion(c.version)
out['hello'] = c.hello
out['babel_hmac_sign'] = c.babel_hmac_sign.hex()
out['crl'] = sorted(c.crl)
print(json.dumps(out))
"#;

#[test]
fn upstream_client_with_our_server_session() {
    let pki = Pki::new("2001:db8::/32");
    let node = pki.node("1/16", 1);
    let config = full_config(&pki, 10);
    let registry = Arc::new(Mutex::new(OurRegistry {
        sessions: Sessions::default(),
        ca_pem: pki.ca_pem(),
        ca_key: pki.ca_key.clone(),
        node_cert: node.cert.clone(),
        config: config.clone(),
        log: ServerLog::default(),
    }));
    let shared = registry.clone();
    let server = TestServer::start(move |target, hmac| {
        shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .handle(target, hmac)
    });

    // Open and private calls with awkward arguments: their targets must be
    // the ones we build.
    let open_calls: Vec<(Rpc, Vec<(&str, &str)>)> = vec![
        (Rpc::RequestToken, vec![("email", "a b+c@é.x")]),
        (
            Rpc::RequestCertificate,
            vec![("token", ""), ("req", "-----BEGIN X-----\nAB/+=\n")],
        ),
        (Rpc::IsToken, vec![("token", "t&u=v%w")]),
        (Rpc::Revoke, vec![("cn_or_serial", "12")]),
        (Rpc::Versions, vec![]),
    ];
    let open_json = Value::from(
        open_calls
            .iter()
            .map(|(rpc, args)| {
                let kw: serde_json::Map<String, Value> = args
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect();
                json!([rpc.name(), kw])
            })
            .collect::<Vec<_>>(),
    )
    .to_string();

    let files = [
        TempPath::new("ca.pem", &pki.ca_pem()),
        TempPath::new("key.pem", &node.key_pem()),
        TempPath::new("cert.pem", &node.cert_pem()),
    ];
    let url = server.url();
    let mut args = vec![url.as_str()];
    args.extend(files.iter().map(TempPath::arg));
    args.push(&open_json);
    let out = run_upstream_bounded(UPSTREAM_CLIENT, &args, Duration::from_secs(120));
    drop(server);
    let got: Value = serde_json::from_slice(&out).unwrap();
    let registry = registry.lock().unwrap_or_else(|e| e.into_inner());

    assert_eq!(got["dh1"], "DH PARAMETERS");
    assert_eq!(got["dh2"], "DH PARAMETERS");
    assert_eq!(got["dh3"], "DH PARAMETERS");
    assert_eq!(got["ca"], String::from_utf8(pki.ca_pem()).unwrap());
    assert_eq!(got["bootstrap"], "", "204 authenticated as an empty body");
    assert_eq!(got["country"], Value::Null, "tampered answer accepted");
    assert_eq!(got["hello"], config.hello);
    assert_eq!(got["babel_hmac_sign"], hex::encode(b"0123456789abcdef"));
    assert_eq!(got["crl"], json!(config.crl));
    // 204 answers to open and private calls come back as empty bodies.
    assert_eq!(got["open"], json!(["", "", "", "", ""]));
    // getDh, then getCountry twice (upstream retries once with a new
    // hello), then getDh again: 3 hellos; our server never refused a
    // request, so both ratchets stayed in step.
    assert_eq!(registry.log.hellos, 3, "{:#?}", registry.log.targets);
    assert_eq!(registry.log.rejected, 0, "{:#?}", registry.log.targets);

    // Upstream's query strings are ours, and parse back to the arguments.
    let cn = node.prefix.to_string();
    let country =
        request_target(Rpc::GetCountry, &[("cn", &cn), ("address", "a b&c=d/é")]).unwrap();
    assert!(
        registry.log.targets.contains(&country),
        "{:#?}",
        registry.log.targets
    );
    assert_eq!(
        parse_target(&country).unwrap().arg("address"),
        Some("a b&c=d/é")
    );
    assert!(registry
        .log
        .targets
        .contains(&hello_target(&cn, upstream_protocol()).unwrap()));
    for (rpc, args) in &open_calls {
        let target = request_target(*rpc, args).unwrap();
        assert!(
            registry.log.targets.contains(&target),
            "{target} not in {:#?}",
            registry.log.targets
        );
        let parsed = parse_target(&target).unwrap();
        for (k, v) in args {
            assert_eq!(parsed.arg(k), Some(*v));
        }
    }
}

#[test]
fn mask_only_touches_ciphertexts() {
    // The helper above must not hide differences elsewhere.
    let a = r#"{"x": "1", "babel_hmac_sign": "AAAA", "babel_hmac_accept": ""}"#;
    let b = r#"{"x": "2", "babel_hmac_sign": "BBBB", "babel_hmac_accept": ""}"#;
    assert_ne!(mask_ciphertexts(a), mask_ciphertexts(b));
    assert_eq!(
        mask_ciphertexts(a),
        r#"{"x": "1", "babel_hmac_sign": "<ciphertext>", "babel_hmac_accept": ""}"#
    );
}
