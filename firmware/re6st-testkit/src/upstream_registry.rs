//! The upstream Python registry (re6stnet 0.642) run on loopback for
//! interoperability tests; stopped when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{upstream_python, Pki};

pub struct UpstreamRegistry {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

/// A free TCP port on 127.0.0.1 (racy by nature, good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Writes DH parameters (fast DSA-style generation) to `path`; 2048 bits,
/// the fewest our nodes (and OpenVPN with OpenSSL 3) accept.
pub fn write_dh(path: &std::path::Path) {
    write_dh_bits(path, 2048);
}

/// Writes DH parameters of `bits` bits to `path`.
pub fn write_dh_bits(path: &std::path::Path, bits: u32) {
    let ok = Command::new("openssl")
        .args(["dhparam", "-dsaparam", "-out"])
        .arg(path)
        .arg(bits.to_string())
        .stderr(Stdio::null())
        .status()
        .expect("openssl dhparam")
        .success();
    assert!(ok, "openssl dhparam failed");
}

impl UpstreamRegistry {
    /// Starts upstream's registry for `pki` with `extra` options
    /// (e.g. `--anonymous-prefix-length 16`), in a fresh directory holding
    /// ca.crt, ca.key, dh.pem, registry.db and the log.
    pub fn start(pki: &Pki, extra: &[&str]) -> UpstreamRegistry {
        let dir = std::env::temp_dir().join(format!(
            "re6st-upstream-registry-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), pki.ca_pem()).unwrap();
        std::fs::write(dir.join("ca.key"), pki.ca_key_pem()).unwrap();
        write_dh(&dir.join("dh.pem"));
        Self::start_in(dir, extra)
    }

    /// Starts it in an existing directory (to reuse its registry.db).
    pub fn start_in(dir: PathBuf, extra: &[&str]) -> UpstreamRegistry {
        let port = free_port();
        let bin = upstream_python()
            .parent()
            .expect("venv bin")
            .join("re6st-registry");
        let child = Command::new(upstream_python())
            .arg(&bin)
            .args(["--port", &port.to_string(), "-4", "127.0.0.1", "-6", ""])
            .arg("--ca")
            .arg(dir.join("ca.crt"))
            .arg("--key")
            .arg(dir.join("ca.key"))
            .arg("--dh")
            .arg(dir.join("dh.pem"))
            .arg("--db")
            .arg(dir.join("registry.db"))
            .arg("-l")
            .arg(dir.join("registry.log"))
            .arg("-r")
            .arg(dir.join("run"))
            .args(["-v", "3"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .expect("start upstream re6st-registry");
        let mut r = UpstreamRegistry { port, dir, child };
        let end = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("upstream registry exited ({status}): {}", r.log());
            }
            assert!(
                Instant::now() < end,
                "upstream registry did not start: {}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Its log and stderr, for assertion messages.
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}\n{}", read("stderr.log"), read("registry.log"))
    }

    /// Stops the registry, keeping its directory (and database).
    pub fn stop(mut self) -> PathBuf {
        self.kill();
        std::mem::take(&mut self.dir)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for UpstreamRegistry {
    fn drop(&mut self) {
        self.kill();
        if !self.dir.as_os_str().is_empty() && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
