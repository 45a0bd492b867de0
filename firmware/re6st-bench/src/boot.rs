//! `re6st-bench boot`: the firmware's first boot on the host, as far as it
//! does not need a network namespace: `re6st init --root` with a profile
//! pointing at our registry on loopback, from an empty data directory to
//! the `provisioned` milestone (RSA key generation, certificate request,
//! network configuration); then init's own memory once settled.
//!
//! Options: `--binary PATH --runs N --json PATH`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::arg;
use re6st_testkit::upstream_registry::free_port;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status(bin: &Path, root: &Path) -> Option<String> {
    let out = Command::new(bin)
        .args(["init", "status", "--root"])
        .arg(root)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

pub fn main(args: Vec<String>) {
    let bin =
        std::fs::canonicalize(arg(&args, "--binary", "target/release/re6st")).expect("--binary");
    let runs: usize = arg(&args, "--runs", "5").parse().expect("--runs");
    let json_path = arg(&args, "--json", "");
    let base = std::env::temp_dir().join(format!("re6st-bench-boot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let reg = base.join("registry");
    let ok = Command::new(&bin)
        .args(["registry", "--init-network", "2001:db8:42::/48", "--dir"])
        .arg(&reg)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "registry --init-network");
    let port = free_port();
    let r = |f: &str| reg.join(f);
    let _registry = Kill(
        Command::new(&bin)
            .args([
                "registry",
                "--port",
                &port.to_string(),
                "-4",
                "127.0.0.1",
                "-6",
                "",
            ])
            .arg("--ca")
            .arg(r("ca.crt"))
            .arg("--key")
            .arg(r("ca.key"))
            .arg("--dh")
            .arg(r("dh.pem"))
            .arg("--db")
            .arg(r("registry.db"))
            .arg("-l")
            .arg(r("registry.log"))
            .arg("-r")
            .arg(r("run"))
            .args(["--anonymous-prefix-length", "16"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let end = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ca = openssl::x509::X509::from_pem(&std::fs::read(r("ca.crt")).unwrap()).unwrap();
    let fp: String = ca
        .digest(openssl::hash::MessageDigest::sha256())
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let mut times = Vec::new();
    let mut rss = Vec::new();
    for run in 0..runs {
        let root: PathBuf = base.join(format!("root{run}"));
        std::fs::create_dir_all(root.join("etc/re6st")).unwrap();
        // The node itself needs a network namespace: not started here.
        std::fs::write(
            root.join("etc/re6st/profile"),
            format!(
                "registry = http://127.0.0.1:{port}/\nfingerprint = sha256:{fp}\n\
                 service.re6st-node =\n"
            ),
        )
        .unwrap();
        let t0 = Instant::now();
        let init = Kill(
            Command::new(&bin)
                .args(["init", "--root"])
                .arg(&root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        loop {
            if status(&bin, &root).is_some_and(|s| s.contains("provisioned")) {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "not provisioned");
            std::thread::sleep(Duration::from_millis(10));
        }
        times.push(t0.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_secs(2));
        rss.push((kib(init.0.id(), "VmRSS"), kib(init.0.id(), "RssAnon")));
        drop(init);
    }
    let _ = std::fs::remove_dir_all(&base);
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let max = sorted[sorted.len() - 1];
    let (vm, anon) = rss.last().copied().unwrap_or_default();
    println!("| {runs} | {median:.2} | {max:.2} | {vm} | {anon} |");
    if !json_path.is_empty() {
        let json = serde_json::json!({
            "runs": runs,
            "seconds_to_provisioned": times,
            "median": median,
            "init_rss_kib": vm,
            "init_private_kib": anon,
        });
        std::fs::write(&json_path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }
}
