//! A registry served over HTTP on loopback, with a throw-away CA, a
//! controllable clock and, optionally, a fake local node relay.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use re6st_proto::prefix::Prefix;
use re6st_registry::community::Communities;
use re6st_registry::db::Db;
use re6st_registry::mail::Mailer;
use re6st_registry::network::NetworkParams;
use re6st_registry::registry::{Environment, PeerSource, Registry, Settings, SystemEnvironment};
use re6st_registry::relay::Relay;
use re6st_registry::{certs, http};
use re6st_testkit::Pki;

/// Real time shifted by an adjustable offset.
#[derive(Clone, Default)]
pub struct Clock(pub Arc<AtomicI64>);

impl Clock {
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Environment for Clock {
    fn now(&self) -> i64 {
        SystemEnvironment.now() + self.0.load(Ordering::SeqCst)
    }
    fn now_micros(&self) -> u64 {
        (SystemEnvironment.now_micros() as i64 + self.0.load(Ordering::SeqCst) * 1_000_000) as u64
    }
    fn random(&self, buf: &mut [u8]) {
        SystemEnvironment.random(buf)
    }
}

pub struct FixedPeers(pub Vec<Prefix>);

impl PeerSource for FixedPeers {
    fn peers(&self) -> Result<Vec<Prefix>, String> {
        Ok(self.0.clone())
    }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "re6st-reg-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Options {
    pub anonymous: Option<u8>,
    pub prefix_length: u8,
    pub grace_period: i64,
    pub mbox: bool,
    /// `--mailhost`, instead of the mbox.
    pub mailhost: Option<String>,
    pub relay: Option<SocketAddr>,
    pub peers: Vec<Prefix>,
    pub communities: Option<&'static str>,
    pub authorized: Vec<String>,
    pub params: NetworkParams,
    /// A MaxMind DB, as GEOIP2_MMDB would name.
    pub geoip: Option<Vec<u8>>,
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    pub limits: http::Limits,
    /// Ask this babeld control socket for peers, instead of `peers`.
    pub babel_socket: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            anonymous: Some(20),
            prefix_length: 16,
            grace_period: 8_640_000,
            mbox: true,
            mailhost: None,
            relay: None,
            peers: vec![],
            communities: None,
            authorized: vec!["127.0.0.1".into(), "::1".into()],
            params: params(),
            geoip: None,
            tls: None,
            limits: http::Limits::default(),
            babel_socket: None,
        }
    }
}

pub fn params() -> NetworkParams {
    NetworkParams {
        ipv4: None,
        same_country: vec![],
        client_count: 10,
        encrypt: false,
        hello: 15,
        max_clients: 20,
        min_protocol: 1,
        tunnel_refresh: 300,
        protocol: re6st_proto::PROTOCOL,
    }
}

pub struct Server {
    pub dir: PathBuf,
    pub url: String,
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub clock: Clock,
    pub mbox: PathBuf,
    pub db: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Writes ca.crt, ca.key and dh.pem into `dir`.
pub fn write_pki(pki: &Pki, dir: &Path) {
    std::fs::write(dir.join("ca.crt"), pki.ca_pem()).unwrap();
    std::fs::write(dir.join("ca.key"), pki.ca_key_pem()).unwrap();
    std::fs::write(dir.join("dh.pem"), re6st_registry::init::FFDHE2048_PEM).unwrap();
}

impl Server {
    pub fn start(pki: &Pki, dir: &Path, o: Options) -> Server {
        write_pki(pki, dir);
        let ca = certs::Ca::from_pem(&pki.ca_pem(), &pki.ca_key_pem()).unwrap();
        let mbox = dir.join("mail.mbox");
        let db_path = dir.join("registry.db");
        let clock = Clock::default();
        let settings = Settings {
            prefix_length: o.prefix_length,
            anonymous_prefix_length: o.anonymous,
            grace_period: o.grace_period,
            dh: dir.join("dh.pem"),
            authorized_origins: o.authorized.clone(),
            mailer: match &o.mailhost {
                Some(h) => Some(Mailer::new(h, false, None, None)),
                None => o
                    .mbox
                    .then(|| Mailer::new(mbox.to_str().unwrap(), false, None, None)),
            },
            communities: o
                .communities
                .map_or_else(Communities::default, |c| Communities::parse(c).unwrap()),
            params: o.params.clone(),
        };
        let relay = o
            .relay
            .map(|a| Relay::new(a, Duration::from_millis(500)).unwrap());
        let registry = Arc::new(
            Registry::new(
                Db::open(&db_path).unwrap(),
                ca,
                settings,
                o.geoip
                    .clone()
                    .map(|b| re6st_registry::geoip::GeoIp::from_bytes(b).unwrap()),
                relay,
                match &o.babel_socket {
                    Some(socket) => Box::new(re6st_registry::babel::BabelPeers {
                        socket: socket.clone(),
                        network: pki.network,
                    }),
                    None => Box::new(FixedPeers(o.peers.clone())),
                },
                Box::new(clock.clone()),
            )
            .unwrap(),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(async { http::listen("127.0.0.1:0".parse().unwrap()) })
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = o
            .tls
            .as_ref()
            .map(|(c, k)| Arc::new(http::tls_acceptor(c, k).unwrap()));
        runtime.spawn(http::run(listener, registry.clone(), tls, o.limits));
        Server {
            dir: dir.to_owned(),
            url: format!("http://{addr}/"),
            addr,
            registry,
            clock,
            mbox,
            db: db_path,
            runtime: Some(runtime),
        }
    }

    /// A raw HTTP/1.0 GET; returns (status, headers, body).
    pub fn get(&self, target: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
        raw_get(self.addr, target, headers)
    }
}

pub fn raw_get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = vec![];
    let _ = s.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no HTTP head");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head, out[split + 4..].to_vec())
}

/// Runs upstream's `re6st-conf` with `args`; returns (success, stdout+stderr).
pub fn re6st_conf(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(re6st_testkit::upstream_python())
        .arg("-c")
        .arg("import sys; from re6st.cli.conf import main; sys.argv[0] = 're6st-conf'; main()")
        .args(args)
        .arg("-d")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The last token mailed to the mbox.
pub fn last_token(mbox: &Path) -> String {
    let text = std::fs::read_to_string(mbox).unwrap();
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("Hello, your token to join re6st network is: "))
        .expect("no token in mbox")
        .trim()
        .to_owned()
}

/// Everything in the database, for before/after comparisons.
pub fn dump_db(path: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut out = vec![];
    for table in ["config", "token", "cert", "crl"] {
        let mut st = c
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .unwrap();
        let n = st.column_count();
        let rows = st
            .query_map([], |r| {
                let mut v = vec![];
                for i in 0..n {
                    v.push(format!("{:?}", r.get::<_, rusqlite::types::Value>(i)?));
                }
                Ok(v.join("|"))
            })
            .unwrap();
        for r in rows {
            out.push(format!("{table}: {}", r.unwrap()));
        }
    }
    out
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A node of the network, with the session state of a registry client.
pub struct Node {
    pub key: openssl::pkey::PKey<openssl::pkey::Private>,
    pub cert: openssl::x509::X509,
    pub prefix: String,
    next_key: Option<Vec<u8>>,
}

pub fn csr(key: &openssl::pkey::PKey<openssl::pkey::Private>) -> String {
    let mut n = openssl::x509::X509Name::builder().unwrap();
    n.append_entry_by_text("O", "test").unwrap();
    let mut r = openssl::x509::X509ReqBuilder::new().unwrap();
    r.set_subject_name(&n.build()).unwrap();
    r.set_pubkey(key).unwrap();
    r.sign(key, openssl::hash::MessageDigest::sha512()).unwrap();
    String::from_utf8(r.build().to_pem().unwrap()).unwrap()
}

impl Node {
    pub fn from_pem(key: openssl::pkey::PKey<openssl::pkey::Private>, pem: &[u8]) -> Node {
        let cert = openssl::x509::X509::from_pem(pem).unwrap();
        let prefix = re6st_proto::cert::node_prefix(&cert).unwrap().to_string();
        Node {
            key,
            cert,
            prefix,
            next_key: None,
        }
    }

    /// Registers anonymously (or with `token`).
    pub fn register(server: &Server, token: &str) -> Node {
        let key = re6st_testkit::rsa_key(2048);
        let target = format!(
            "/requestCertificate?token={}&req={}&location=&ip=",
            enc(token),
            enc(&csr(&key))
        );
        let (status, _, body) = server.get(&target, &[]);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        Node::from_pem(key, &body)
    }

    /// Opens a session with `hello`.
    pub fn hello(&mut self, server: &Server) {
        let (status, _, body) = server.get(
            &format!("/hello?client_prefix={}&protocol=8", self.prefix),
            &[],
        );
        assert_eq!(status, 200);
        let n = body.len() / 2;
        let ca = openssl::x509::X509::from_pem(&std::fs::read(server.dir.join("ca.crt")).unwrap())
            .unwrap();
        re6st_proto::crypto::verify(&ca, &body[n..], &body[..n]).unwrap();
        self.next_key = Some(re6st_proto::crypto::decrypt(&self.key, &body[..n]).unwrap());
    }

    /// The HMAC header for `target` with the current key, advancing the
    /// session; returns (header, response key).
    pub fn sign(&mut self, target: &str) -> (String, Vec<u8>) {
        use base64::Engine;
        let key = self.next_key.take().expect("no session");
        let mac = re6st_proto::crypto::hmac_sha1(&key, target.as_bytes()).unwrap();
        let response_key = re6st_proto::crypto::sha1(&key).unwrap().to_vec();
        self.next_key = Some(re6st_proto::crypto::sha1(&response_key).unwrap().to_vec());
        (
            base64::engine::general_purpose::STANDARD.encode(mac),
            response_key,
        )
    }

    /// An authenticated call (`cn` is added); checks the response HMAC.
    pub fn call(
        &mut self,
        server: &Server,
        method: &str,
        params: &[(&str, &str)],
    ) -> (u16, Vec<u8>) {
        use base64::Engine;
        if self.next_key.is_none() {
            self.hello(server);
        }
        let mut target = format!("/{method}?cn={}", self.prefix);
        for (k, v) in params {
            target.push_str(&format!("&{k}={}", enc(v)));
        }
        let (mac, response_key) = self.sign(&target);
        let (status, head, body) = server.get(&target, &[("Re6stHMAC", &mac)]);
        if status == 200 || status == 204 {
            let got = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("re6sthmac: ")
                        .or_else(|| l.strip_prefix("Re6stHMAC: "))
                })
                .expect("response HMAC");
            let want = re6st_proto::crypto::hmac_sha1(&response_key, &body).unwrap();
            assert_eq!(
                base64::engine::general_purpose::STANDARD
                    .decode(got.trim())
                    .unwrap(),
                want
            );
        } else {
            self.next_key = None;
        }
        (status, body)
    }
}

/// The network configuration served to `node`, decompressed.
pub fn network_config(server: &Server, node: &mut Node) -> serde_json::Value {
    use std::io::Read;
    let (status, body) = node.call(server, "getNetworkConfig", &[]);
    assert_eq!(status, 200);
    let mut json = vec![];
    flate2::read::ZlibDecoder::new(&body[..])
        .read_to_end(&mut json)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

/// The version number in a network configuration.
pub fn version_of(config: &serde_json::Value) -> u64 {
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(config["version"].as_str().unwrap())
        .unwrap();
    re6st_proto::crypto::version_number(&blob).unwrap()
}

/// Everything logged in this test process, from the first call on (the
/// registry logs from its own threads, so the subscriber is global).
pub fn logs() -> String {
    use std::sync::{Mutex, OnceLock};
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(vec![]));
        let b = buf.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Sink(b.clone()))
            .init();
        buf
    });
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}
