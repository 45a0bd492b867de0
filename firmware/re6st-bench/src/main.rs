//! `re6st-bench node`: see [`node`]; `re6st-bench path`: see [`path`];
//! `re6st-bench boot`: see [`boot`].
//!
//! `re6st-bench registry`: our registry against upstream's, side by side on
//! this machine, with many concurrent clients:
//! - certificate requests per second (anonymous `requestCertificate`);
//! - `hello` + `getNetworkConfig` round trips per second, each client with
//!   its own certificate and session.
//!
//! Prints a Markdown table and writes JSON to the path given with `--json`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Req, X509};
use re6st_proto::cert;
use re6st_registry_client::call;
use re6st_registry_client::client::RegistryClient;
use re6st_registry_client::transport::RegistryUrl;
use re6st_testkit::upstream_registry::{free_port, write_dh};
use re6st_testkit::{rsa_key, upstream_python, Pki};

struct Server {
    name: &'static str,
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_port(port: u16) {
    let end = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "server on port {port} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn common_args(dir: &Path, port: u16) -> Vec<String> {
    let p = |f: &str| dir.join(f).display().to_string();
    vec![
        "--port".into(),
        port.to_string(),
        "-4".into(),
        "127.0.0.1".into(),
        "-6".into(),
        String::new(),
        "--ca".into(),
        p("ca.crt"),
        "--key".into(),
        p("ca.key"),
        "--dh".into(),
        p("dh.pem"),
        "-l".into(),
        p("registry.log"),
        "-r".into(),
        p("run"),
        "-v".into(),
        "0".into(),
        "--anonymous-prefix-length".into(),
        "24".into(),
    ]
}

fn start(name: &'static str, ours: &Path, base: &Path) -> Server {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["ca.crt", "ca.key", "dh.pem"] {
        std::fs::copy(base.join(f), dir.join(f)).unwrap();
    }
    let port = free_port();
    let mut args = common_args(&dir, port);
    args.extend(["--db".into(), dir.join("registry.db").display().to_string()]);
    let mut cmd = if name == "ours" {
        let mut c = Command::new(ours);
        c.arg("registry");
        c
    } else {
        let mut c = Command::new(upstream_python());
        c.arg(upstream_python().parent().unwrap().join("re6st-registry"));
        c
    };
    let child = cmd
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port);
    Server {
        name,
        child,
        url: format!("http://127.0.0.1:{port}/"),
    }
}

fn keys_2048(n: usize) -> Vec<PKey<Private>> {
    let threads: Vec<_> = (0..2)
        .map(|t| {
            std::thread::spawn(move || {
                (0..n)
                    .filter(|i| i % 2 == t)
                    .map(|_| rsa_key(2048))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

fn csr(key: &PKey<Private>) -> String {
    let mut r = X509Req::builder().unwrap();
    r.set_pubkey(key).unwrap();
    r.sign(key, MessageDigest::sha512()).unwrap();
    String::from_utf8(r.build().to_pem().unwrap()).unwrap()
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Runs `op` from `clients` concurrent workers for `duration`.
async fn load<F, Fut>(clients: usize, duration: Duration, op: F) -> (f64, u64, u64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let counts = Arc::new(Counts::default());
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (counts, op) = (counts.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < duration {
                let c = if op(i).await {
                    &counts.ok
                } else {
                    &counts.failed
                };
                c.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let ok = counts.ok.load(Ordering::Relaxed);
    (ok as f64 / secs, ok, counts.failed.load(Ordering::Relaxed))
}

struct Row {
    server: &'static str,
    test: &'static str,
    clients: usize,
    per_sec: f64,
    ok: u64,
    failed: u64,
}

async fn bench_server(
    s: &Server,
    ca: &X509,
    clients: usize,
    duration: Duration,
    rows: &mut Vec<Row>,
) {
    let url = Arc::new(RegistryUrl::parse(&s.url).unwrap());
    let timeout = Duration::from_secs(60);
    // Client identities for the session test. Keys have the CA's size, as
    // re6st-conf makes them: the hello answer is split in two equal halves.
    let keys = keys_2048(clients);
    let mut identities = Vec::new();
    for k in keys {
        let req = csr(&k);
        let pem = call::unauthenticated(
            &url,
            "requestCertificate",
            &[("token", ""), ("req", &req), ("location", ""), ("ip", "")],
            timeout,
        )
        .await
        .expect("requestCertificate")
        .expect("certificate");
        let c = X509::from_pem(&pem).unwrap();
        identities.push((cert::node_prefix(&c).unwrap(), k));
    }
    let csrs: Arc<Vec<String>> = Arc::new(keys_2048(8).iter().map(csr).collect());
    let u = url.clone();
    let (rate, ok, failed) = load(clients, duration, move |i| {
        let (u, csrs) = (u.clone(), csrs.clone());
        async move {
            let req = &csrs[i % csrs.len()];
            matches!(
                call::unauthenticated(
                    &u,
                    "requestCertificate",
                    &[("token", ""), ("req", req), ("location", ""), ("ip", "")],
                    timeout
                )
                .await,
                Ok(Some(_))
            )
        }
    })
    .await;
    rows.push(Row {
        server: s.name,
        test: "requestCertificate",
        clients,
        per_sec: rate,
        ok,
        failed,
    });

    let sessions: Arc<Vec<tokio::sync::Mutex<RegistryClient>>> = Arc::new(
        identities
            .into_iter()
            .map(|(p, k)| {
                tokio::sync::Mutex::new(RegistryClient::new(
                    (*url).clone(),
                    ca.clone(),
                    k,
                    &p,
                    timeout,
                ))
            })
            .collect(),
    );
    let (rate, ok, failed) = load(clients, duration, move |i| {
        let sessions = sessions.clone();
        async move {
            let mut c = sessions[i].lock().await;
            // A fresh session each round: hello, then getNetworkConfig.
            c.reset_session();
            match c.network_config().await {
                Ok(_) => true,
                Err(e) => {
                    if i == 0 {
                        eprintln!("bench: getNetworkConfig: {e}");
                    }
                    false
                }
            }
        }
    })
    .await;
    rows.push(Row {
        server: s.name,
        test: "hello+getNetworkConfig",
        clients,
        per_sec: rate,
        ok,
        failed,
    });
}

mod boot;
mod node;
mod path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("registry") => registry_main(args),
        Some("node") => node::main(args),
        Some("boot") => boot::main(args),
        Some("path") => path::main(args),
        _ => {
            eprintln!("usage: re6st-bench registry|node|path|boot [options]");
            std::process::exit(2);
        }
    }
}

/// The value after `flag` on the command line, or `default`.
pub(crate) fn arg(args: &[String], flag: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.into())
}

fn registry_main(args: Vec<String>) {
    let get = |flag: &str, default: &str| arg(&args, flag, default);
    let ours = PathBuf::from(get("--binary", "target/release/re6st"));
    let clients: usize = get("--clients", "200").parse().unwrap();
    let duration = Duration::from_secs(get("--seconds", "10").parse().unwrap());
    let json_path = get("--json", "");
    let base = std::env::temp_dir().join(format!("re6st-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let pki = Pki::new("2001:db8::/32");
    std::fs::write(base.join("ca.crt"), pki.ca_pem()).unwrap();
    std::fs::write(base.join("ca.key"), pki.ca_key_pem()).unwrap();
    write_dh(&base.join("dh.pem"));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for name in ["ours", "upstream"] {
        let s = start(name, &ours, &base);
        eprintln!("bench: {name} registry, {clients} clients, {duration:?} per test");
        rt.block_on(bench_server(&s, &pki.ca, clients, duration, &mut rows));
    }
    std::fs::remove_dir_all(&base).ok();

    println!("| registry | test | clients | per second | ok | failed |\n|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} | {} | {} |",
            r.server, r.test, r.clients, r.per_sec, r.ok, r.failed
        );
    }
    let mut ratios = serde_json::Map::new();
    for test in ["requestCertificate", "hello+getNetworkConfig"] {
        let rate = |s: &str| {
            rows.iter()
                .find(|r| r.server == s && r.test == test)
                .map(|r| r.per_sec)
                .unwrap_or(0.0)
        };
        let ratio = rate("ours") / rate("upstream").max(f64::MIN_POSITIVE);
        println!("\n{test}: ours / upstream = {ratio:.1}x");
        ratios.insert(test.into(), ratio.into());
    }
    if !json_path.is_empty() {
        let json = serde_json::json!({
            "registry": rows.iter().map(|r| serde_json::json!({
                "server": r.server, "test": r.test, "clients": r.clients,
                "per_second": r.per_sec, "ok": r.ok, "failed": r.failed,
            })).collect::<Vec<_>>(),
            "ratio": ratios,
        });
        std::fs::write(&json_path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }
}
