//! Throw-away network labs for tests: network namespaces joined by veth
//! pairs, processes started inside them, and everything removed on drop,
//! even when the test panics.
//!
//! Addresses must come from the ranges reserved for testing:
//! 198.18.0.0/15 and 2001:db8::/32.

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A set of namespaces and processes owned by one test.
pub struct Lab {
    tag: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    files: Vec<std::path::PathBuf>,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // Both outputs and the status: a command run with `2>&1` has an empty
    // stderr (a failed `re6st conf` in CI said nothing else).
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): stdout: {} stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether process `pid` runs (a zombie, dead but not yet reaped, does not).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

impl Lab {
    /// A new, empty lab. Needs root (CAP_NET_ADMIN / CAP_SYS_ADMIN).
    pub fn new() -> Lab {
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        Lab {
            // Short: interface names are limited to 15 bytes.
            tag: format!("r{}x{n}", std::process::id() % 100_000),
            namespaces: Vec::new(),
            children: Vec::new(),
            files: Vec::new(),
        }
    }

    /// The unique name of namespace `short` in this lab.
    pub fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.tag)
    }

    /// Creates namespace `short` with loopback up and IPv6 forwarding on.
    pub fn add_ns(&mut self, short: &str) -> String {
        let name = self.ns(short);
        run(Command::new("ip").args(["netns", "add", &name]));
        self.namespaces.push(name.clone());
        self.sh(short, "ip link set lo up; sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv4.ip_forward=1 net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0");
        name
    }

    /// Deletes namespace `short` after killing what runs in it (its links
    /// go with it): a router losing power, as the network sees it.
    pub fn remove_ns(&mut self, short: &str) {
        let name = self.ns(short);
        if !self.namespaces.contains(&name) {
            return;
        }
        kill_all_in(&name);
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        self.namespaces.retain(|n| *n != name);
    }

    /// Joins namespaces `a` and `b` with a veth pair named `ifname` on both
    /// sides, brings it up and adds the given addresses (CIDR, may be empty).
    pub fn link(&mut self, a: &str, a_addrs: &[&str], b: &str, b_addrs: &[&str], ifname: &str) {
        let tmp_a = format!(
            "{}a{}",
            self.tag,
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let tmp_b = format!(
            "{}b{}",
            self.tag,
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args([
            "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b,
        ]));
        for (tmp, ns, addrs) in [(&tmp_a, a, a_addrs), (&tmp_b, b, b_addrs)] {
            let full = self.ns(ns);
            run(Command::new("ip").args(["link", "set", tmp, "netns", &full, "name", ifname]));
            let mut script = format!("ip link set {ifname} up");
            for addr in addrs {
                script += &format!("; ip addr add {addr} dev {ifname}");
            }
            self.sh(ns, &script);
        }
    }

    /// Runs a shell command in namespace `ns`; panics when it fails.
    pub fn sh(&self, ns: &str, script: &str) -> String {
        let out = run(Command::new("ip").args(["netns", "exec", &self.ns(ns), "sh", "-c", script]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread inside namespace `ns` (sockets and taps it
    /// makes, and the commands it runs, are that namespace's).
    pub fn run_in<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> T {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/{}", self.ns(ns));
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path).unwrap();
                // SAFETY: a namespace file descriptor, for this thread only.
                assert_eq!(
                    unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                    0
                );
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Runs a shell command in namespace `ns`; returns whether it succeeded.
    pub fn try_sh(&self, ns: &str, script: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(ns), "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Starts a long-running program in namespace `ns`; it is killed when
    /// the lab is dropped. Its output goes to `log` (a file path).
    pub fn spawn(&mut self, ns: &str, argv: &[&str], log: &std::path::Path) -> u32 {
        let file = std::fs::File::create(log).expect("log file");
        let err = file.try_clone().expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(ns)])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Writes a file (e.g. a daemon's configuration) that the lab removes
    /// when dropped; its name is unique to the lab.
    pub fn temp_file(&mut self, name: &str, contents: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("{}-{name}", self.tag));
        std::fs::write(&path, contents).expect("temporary file");
        self.files.push(path.clone());
        path
    }

    /// Waits until `check` is true, polling; false when `limit` passes.
    pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if check() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        check()
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            // `ip netns exec` execs the program, so this is the program itself.
            terminate(child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Anything else still running in our namespaces (e.g. daemons that
        // forked) goes too, then the namespaces themselves.
        for ns in self.namespaces.iter().rev() {
            kill_all_in(ns);
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn kill_all_in(ns: &str) {
    if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_namespaces_ping_and_clean_up() {
        let names;
        {
            let mut lab = Lab::new();
            lab.add_ns("a");
            lab.add_ns("b");
            lab.link(
                "a",
                &["198.18.0.1/24", "2001:db8::1/64"],
                "b",
                &["198.18.0.2/24", "2001:db8::2/64"],
                "eth0",
            );
            assert!(lab.try_sh("a", "ping -c1 -W2 198.18.0.2"));
            assert!(lab.try_sh("a", "ping -6 -c1 -W2 2001:db8::2"));
            assert!(!lab.try_sh("a", "ping -c1 -W1 198.18.9.9"));
            let log = std::env::temp_dir().join(format!("{}-sleep.log", lab.ns("a")));
            lab.spawn("b", &["sleep", "600"], &log);
            names = (lab.ns("a"), lab.ns("b"));
        }
        let list = String::from_utf8(
            Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(
            !list.contains(&names.0) && !list.contains(&names.1),
            "{list}"
        );
    }
}
