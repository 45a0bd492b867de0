//! `re6st-bench node`: see [`node`]; `re6st-bench path`: see [`path`];
//! `re6st-bench boot`: see [`boot`]; `re6st-bench join`: see [`join`].
//!
//! `re6st-bench registry`: our registry against upstream's, side by side on
//! this machine, with many concurrent clients:
//! - certificate requests per second (anonymous `requestCertificate`);
//! - `hello` + `getNetworkConfig` round trips per second, each client with
//!   its own certificate and session.
//!
//! Each for every client count of `--clients` (default 20 and 200), over
//! `--runs` runs, with the latency of the successful calls (median, 99th
//! percentile). Prints Markdown tables (every run, then medians over the
//! runs) and writes JSON to the path given with `--json`.

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
        // Every bench client connects from 127.0.0.1, standing for many
        // sources: the per-source connection limit (ours only) would
        // refuse all but a few of them.
        c.args(["--max-connections-per-source", "0"]);
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

/// What one load test measured.
struct Load {
    per_sec: f64,
    ok: u64,
    failed: u64,
    /// Latency of the successful calls, ms: median and 99th percentile.
    p50_ms: f64,
    p99_ms: f64,
}

/// The `q` quantile (0..=1) of sorted `v` (nearest rank), 0 when empty.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// Runs `op` from `clients` concurrent workers for `duration`.
async fn load<F, Fut>(clients: usize, duration: Duration, op: F) -> Load
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let failed = Arc::new(AtomicU64::new(0));
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (failed, op) = (failed.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while start.elapsed() < duration {
                let t = Instant::now();
                if op(i).await {
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap_or_default());
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Load {
        per_sec: latencies.len() as f64 / secs,
        ok: latencies.len() as u64,
        failed: failed.load(Ordering::Relaxed),
        p50_ms: quantile(&latencies, 0.5),
        p99_ms: quantile(&latencies, 0.99),
    }
}

struct Row {
    run: usize,
    server: &'static str,
    test: &'static str,
    clients: usize,
    load: Load,
}

const REQUEST_CERTIFICATE: &str = "requestCertificate";
const HELLO: &str = "hello+getNetworkConfig";

async fn bench_server(
    s: &Server,
    ca: &X509,
    (run, clients): (usize, usize),
    duration: Duration,
    tests: &[String],
    rows: &mut Vec<Row>,
) {
    let url = Arc::new(RegistryUrl::parse(&s.url).unwrap());
    let timeout = Duration::from_secs(60);
    let want = |t: &str| tests.iter().any(|x| x == t);
    // Client identities for the session test. Keys have the CA's size, as
    // re6st-conf makes them: the hello answer is split in two equal halves.
    let keys = if want(HELLO) {
        keys_2048(clients)
    } else {
        vec![]
    };
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
    if want(REQUEST_CERTIFICATE) {
        let csrs: Arc<Vec<String>> = Arc::new(keys_2048(8).iter().map(csr).collect());
        let u = url.clone();
        let load = load(clients, duration, move |i| {
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
            run,
            server: s.name,
            test: REQUEST_CERTIFICATE,
            clients,
            load,
        });
    }
    if !want(HELLO) {
        return;
    }
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
    let load = load(clients, duration, move |i| {
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
        run,
        server: s.name,
        test: HELLO,
        clients,
        load,
    });
}

mod boot;
mod join;
mod node;
mod path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("registry") => registry_main(args),
        Some("node") => node::main(args),
        Some("boot") => boot::main(args),
        Some("path") => path::main(args),
        Some("join") => join::main(args),
        _ => {
            eprintln!("usage: re6st-bench registry|node|path|join|boot [options]");
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

/// A comma-separated list of values.
fn list<T: std::str::FromStr>(s: &str, flag: &str) -> Vec<T> {
    s.split(',')
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.trim().parse().unwrap_or_else(|_| {
                eprintln!("re6st-bench registry: bad value {v:?} for {flag}");
                std::process::exit(2)
            })
        })
        .collect()
}

/// `re6st-bench registry [--binary PATH] [--clients 20,200] [--seconds 10]
/// [--runs 1] [--servers ours,upstream] [--tests requestCertificate,
/// hello+getNetworkConfig] [--json PATH]`: every run starts every server
/// afresh (an empty database) for each client count, ours then upstream.
fn registry_main(args: Vec<String>) {
    let get = |flag: &str, default: &str| arg(&args, flag, default);
    let ours = PathBuf::from(get("--binary", "target/release/re6st"));
    let client_counts: Vec<usize> = list(&get("--clients", "20,200"), "--clients");
    let duration = Duration::from_secs(get("--seconds", "10").parse().unwrap());
    let runs: usize = get("--runs", "1").parse().unwrap();
    let servers: Vec<String> = list(&get("--servers", "ours,upstream"), "--servers");
    let tests: Vec<String> = list(
        &get("--tests", &format!("{REQUEST_CERTIFICATE},{HELLO}")),
        "--tests",
    );
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
    for run in 1..=runs {
        for &clients in &client_counts {
            for name in ["ours", "upstream"] {
                if !servers.iter().any(|s| s == name) {
                    continue;
                }
                let s = start(name, &ours, &base);
                eprintln!(
                    "bench: run {run}/{runs}: {name} registry, {clients} clients, \
                     {duration:?} per test"
                );
                rt.block_on(bench_server(
                    &s,
                    &pki.ca,
                    (run, clients),
                    duration,
                    &tests,
                    &mut rows,
                ));
                drop(s);
                std::fs::remove_dir_all(base.join(name)).ok();
            }
        }
    }
    std::fs::remove_dir_all(&base).ok();

    println!(
        "| run | registry | test | clients | per second | ok | failed | latency p50 ms | p99 ms |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for r in &rows {
        let l = &r.load;
        println!(
            "| {} | {} | {} | {} | {:.1} | {} | {} | {:.1} | {:.1} |",
            r.run, r.server, r.test, r.clients, l.per_sec, l.ok, l.failed, l.p50_ms, l.p99_ms
        );
    }
    // Per test and client count: medians over the runs, and the median of
    // each run's ratio (both servers measured under the same load from
    // the rest of the machine).
    println!(
        "\nMedians over {runs} run(s); the ratio is the median of each run's ours / upstream.\n\n\
         | test | clients | ours /s | upstream /s | ours / upstream | ours p99 ms | upstream p99 ms | ours failed | upstream failed |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    let mut summary = Vec::new();
    for test in [REQUEST_CERTIFICATE, HELLO] {
        for &clients in &client_counts {
            let of = |server: &str| -> Vec<&Load> {
                rows.iter()
                    .filter(|r| r.server == server && r.test == test && r.clients == clients)
                    .map(|r| &r.load)
                    .collect()
            };
            let (o, u) = (of("ours"), of("upstream"));
            if o.is_empty() && u.is_empty() {
                continue;
            }
            let med = |v: &[&Load], f: fn(&Load) -> f64| -> Option<f64> {
                (!v.is_empty()).then(|| median(&v.iter().map(|l| f(l)).collect::<Vec<_>>()))
            };
            let ratios: Vec<f64> = o
                .iter()
                .zip(&u)
                .map(|(o, u)| o.per_sec / u.per_sec.max(f64::MIN_POSITIVE))
                .collect();
            let ratio = (!ratios.is_empty()).then(|| median(&ratios));
            let failed = |v: &[&Load]| v.iter().map(|l| l.failed).sum::<u64>();
            let show =
                |x: Option<f64>, unit: &str| x.map_or("-".into(), |x| format!("{x:.1}{unit}"));
            println!(
                "| {test} | {clients} | {} | {} | {} | {} | {} | {} | {} |",
                show(med(&o, |l| l.per_sec), ""),
                show(med(&u, |l| l.per_sec), ""),
                show(ratio, "x"),
                show(med(&o, |l| l.p99_ms), ""),
                show(med(&u, |l| l.p99_ms), ""),
                failed(&o),
                failed(&u),
            );
            summary.push(serde_json::json!({
                "test": test, "clients": clients, "runs": runs,
                "ours_per_second": med(&o, |l| l.per_sec),
                "upstream_per_second": med(&u, |l| l.per_sec),
                "ratio": ratio,
                "ours_p99_ms": med(&o, |l| l.p99_ms),
                "upstream_p99_ms": med(&u, |l| l.p99_ms),
                "ours_failed": failed(&o), "upstream_failed": failed(&u),
            }));
        }
    }
    if !json_path.is_empty() {
        let json = serde_json::json!({
            "registry": rows.iter().map(|r| serde_json::json!({
                "run": r.run, "server": r.server, "test": r.test, "clients": r.clients,
                "per_second": r.load.per_sec, "ok": r.load.ok, "failed": r.load.failed,
                "p50_ms": r.load.p50_ms, "p99_ms": r.load.p99_ms,
            })).collect::<Vec<_>>(),
            "summary": summary,
        });
        std::fs::write(&json_path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }
}
