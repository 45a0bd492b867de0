//! `init` run as an ordinary process below a scratch root (`--root`), and
//! as PID 1 of a new PID namespace: services start, restart with back-off,
//! stop in order; shutdown requests (signals, control socket) stop
//! everything and leave no process behind. Every wait is bounded, and a
//! guard kills whatever a failed test left.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_re6st-init");

fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// Pids of processes whose environment names `data` as RE6ST_DATA: the
/// services of one init under test, and whatever they forked.
fn processes_of(data: &Path) -> Vec<i32> {
    let needle = format!("RE6ST_DATA={}", data.display());
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            // Zombies have an empty environ: they are gone in all but name.
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
        })
        .collect()
}

struct Init {
    root: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Init {
    fn root(tag: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("re6st-init-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc/re6st")).unwrap();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        root
    }

    fn write(root: &Path, path: &str, text: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Starts init below `root` (prepared by the caller), through `wrap`
    /// (e.g. `unshare ...`) if given.
    fn start(root: PathBuf, wrap: &[&str]) -> Init {
        Self::start_with(root, wrap, &[])
    }

    fn start_with(root: PathBuf, wrap: &[&str], extra: &[&str]) -> Init {
        let log = root.with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = match wrap.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("--root")
            .arg(&root)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().unwrap();
        let init = Init {
            root,
            child: Some(child),
            log,
        };
        assert!(
            wait_until(Duration::from_secs(20), || init.socket().exists()),
            "init did not open its control socket\n{}",
            init.log()
        );
        init
    }

    fn socket(&self) -> PathBuf {
        self.root.join("run/re6st-init/control")
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn ctl(&self, command: &str) -> String {
        let out = Command::new(BIN)
            .args([command, "--root"])
            .arg(&self.root)
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}: {out:?}\n{}", self.log());
        String::from_utf8(out.stdout).unwrap()
    }

    /// (state, pid, restarts) of `service` in `status`.
    fn service(&self, service: &str) -> Option<(String, Option<i32>, u64)> {
        let status = self.ctl("status");
        status.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&service))
                .then(|| (f[1].to_owned(), f[2].parse().ok(), f[3].parse().unwrap()))
        })
    }

    fn wait_running(&self, service: &str, restarts: u64) -> i32 {
        let mut last = None;
        let ok = wait_until(Duration::from_secs(20), || {
            last = self.service(service);
            matches!(&last, Some((s, Some(_), r)) if s == "running" && *r == restarts)
        });
        assert!(
            ok,
            "{service} not running with {restarts} restarts: {last:?}\n{}",
            self.log()
        );
        last.and_then(|l| l.1).unwrap()
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Waits for init to exit; returns its exit code.
    fn wait_exit(&mut self, limit: Duration) -> i32 {
        let child = self.child.as_mut().unwrap();
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < end, "init did not exit\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Checks that a clean exit left nothing: no process, no socket.
    fn assert_clean(&self) {
        let left = processes_of(&self.data());
        assert!(left.is_empty(), "left behind: {left:?}\n{}", self.log());
        assert!(!self.socket().exists(), "socket left behind");
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in processes_of(&self.data()) {
            // SAFETY: kill(2) on processes this test started.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
        let _ = std::fs::remove_file(&self.log);
    }
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a service of the init under test.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid}");
}

#[test]
fn services_start_restart_with_backoff_and_stop_on_sigterm() {
    let root = Init::root("backoff");
    Init::write(&root, "proc/cmdline", "quiet re6st.hostname=it-router\n");
    Init::write(
        &root,
        "etc/re6st/profile",
        "hostname = board\n\
         service.base = sleep 1000\n\
         service.top = sleep 1000\n\
         service.top.after = base\n\
         service.node = sleep 1000\n\
         service.node.after = provisioned\n\
         # This test binary is init alone, without the node.\n\
         service.re6st-node =\n",
    );
    let mut init = Init::start(root, &[]);
    let base = init.wait_running("base", 0);
    init.wait_running("top", 0);
    let status = init.ctl("status");
    assert!(status.contains("hostname: it-router"), "{status}");
    assert!(status.contains("milestones: network clock\n"), "{status}");
    // No registry: the node waits for a provisioning that won't come.
    assert_eq!(init.service("node").unwrap().0, "waiting");

    // Killed: restarted after 1 s, then after 2 s.
    let killed = Instant::now();
    kill(base, libc::SIGKILL);
    let base2 = init.wait_running("base", 1);
    let first = killed.elapsed();
    assert_ne!(base2, base);
    let killed = Instant::now();
    kill(base2, libc::SIGKILL);
    init.wait_running("base", 2);
    let second = killed.elapsed();
    assert!(first >= Duration::from_millis(900), "{first:?}");
    assert!(second >= Duration::from_millis(1900), "{second:?}");
    assert!(
        second > first + Duration::from_millis(500),
        "{first:?} then {second:?}"
    );
    let log = init.ctl("log");
    assert!(
        log.contains("ended (signal SIGKILL); restart in 1s"),
        "{log}"
    );
    assert!(
        log.contains("ended (signal SIGKILL); restart in 2s"),
        "{log}"
    );

    init.signal(libc::SIGTERM);
    assert_eq!(init.wait_exit(Duration::from_secs(15)), 0);
    let log = init.log();
    // The dependent stops before what it depends on.
    let top = log.find("stopping top").expect("top stopped");
    let base = log.find("stopping base").expect("base stopped");
    assert!(top < base, "{log}");
    assert!(log.contains("poweroff requested (SIGTERM)"), "{log}");
    init.assert_clean();
    // The clock was saved on the data partition at shutdown.
    let saved = std::fs::read_to_string(init.data().join("clock")).unwrap();
    assert!(saved.trim().parse::<u64>().unwrap() > 1_700_000_000);
}

#[test]
fn halt_signal_kills_stubborn_services_and_orphans() {
    let root = Init::root("stubborn");
    Init::write(
        &root,
        "etc/re6st/profile",
        // Ignores TERM: needs KILL. Its daemonized child leaves the
        // service's process group: only the final sweep finds it.
        "service.stubborn = sh -c \"trap '' TERM; setsid sleep 1000 & while :; do sleep 0.1; done\"\n",
    );
    let mut init = Init::start(root, &[]);
    init.wait_running("stubborn", 0);
    assert!(
        wait_until(Duration::from_secs(10), || processes_of(&init.data()).len()
            >= 3),
        "{:?}",
        processes_of(&init.data())
    );
    let asked = Instant::now();
    init.signal(libc::SIGUSR1);
    assert_eq!(init.wait_exit(Duration::from_secs(20)), 0);
    let took = asked.elapsed();
    let log = init.log();
    assert!(log.contains("halt requested (SIGUSR1)"), "{log}");
    assert!(
        log.contains("stopping stubborn") && log.contains("with SIGKILL"),
        "{log}"
    );
    // TERM, then KILL after the 5 s stop timeout.
    assert!(took >= Duration::from_secs(5), "{took:?}");
    init.assert_clean();
}

#[test]
fn control_socket_reboot_and_poweroff() {
    for request in ["reboot", "poweroff"] {
        let root = Init::root(request);
        Init::write(&root, "etc/re6st/profile", "service.s = sleep 1000\n");
        let mut init = Init::start(root, &[]);
        init.wait_running("s", 0);
        assert_eq!(init.ctl(request), format!("{request}\n"));
        assert_eq!(init.wait_exit(Duration::from_secs(15)), 0);
        let log = init.log();
        assert!(
            log.contains(&format!("{request} requested (control socket)")),
            "{log}"
        );
        assert!(log.contains(&format!("stopped ({request})")), "{log}");
        init.assert_clean();
    }
}

#[test]
fn corrupt_state_is_wiped_and_bad_profile_sources_ignored() {
    let root = Init::root("corrupt");
    Init::write(&root, "data/re6st-state", "re6st-init data 1\n");
    Init::write(&root, "data/re6st/cert.crt", "not a certificate");
    Init::write(&root, "data/re6st/cert.key", "not a key");
    // Unterminated quote: the whole command line is left out.
    Init::write(&root, "proc/cmdline", "re6st.hostname=\"oops\n");
    Init::write(&root, "etc/re6st/profile", "hostname=board\n");
    let mut init = Init::start(root, &[]);
    let status = init.ctl("status");
    assert!(status.contains("hostname: board"), "{status}");
    assert!(!init.data().join("re6st/cert.crt").exists());
    assert!(init.data().join("re6st").is_dir());
    let log = init.ctl("log");
    assert!(log.contains("Wipe"), "{log}");
    assert!(log.contains("ignoring kernel command line"), "{log}");
    init.signal(libc::SIGINT);
    assert_eq!(init.wait_exit(Duration::from_secs(15)), 0);
    init.assert_clean();
}

#[test]
fn provisions_from_the_registry_then_starts_the_node() {
    let pki = re6st_testkit::Pki::new("2001:db8::/32");
    let reg = re6st_testkit::upstream_registry::UpstreamRegistry::start(
        &pki,
        &["--anonymous-prefix-length", "20"],
    );
    let fp = hex::encode(
        pki.ca
            .digest(openssl::hash::MessageDigest::sha256())
            .unwrap(),
    );
    let root = Init::root("provision");
    Init::write(
        &root,
        "proc/cmdline",
        &format!(
            "re6st.registry={} re6st.fingerprint=sha256:{fp}\n",
            reg.url()
        ),
    );
    Init::write(
        &root,
        "etc/re6st/profile",
        "service.node = sh -c \"test -s $RE6ST_IDENTITY/cert.crt && exec sleep 1000\"\n\
         service.node.after = provisioned\n\
         # This test binary is init alone, without the node.\n\
         service.re6st-node =\n",
    );
    let mut init = Init::start(root, &[]);
    // The node only stays up if the certificate is there when it starts.
    init.wait_running("node", 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(init.service("node").unwrap().2, 0, "{}", init.log());
    let status = init.ctl("status");
    assert!(
        status.contains("milestones: network clock provisioned"),
        "{status}\n{}",
        reg.log()
    );
    for f in ["ca.crt", "cert.crt", "cert.key", "re6stnet.conf"] {
        assert!(init.data().join("re6st").join(f).exists(), "{f}");
    }
    // With a registry and no NTP server, the clock milestone (in the
    // status above) needs the Date of a registry answer.
    let log = init.ctl("log");
    assert!(log.contains("provisioned by"), "{log}");
    init.signal(libc::SIGTERM);
    assert_eq!(init.wait_exit(Duration::from_secs(15)), 0);
    init.assert_clean();
}

#[test]
fn runs_as_pid1_of_a_pid_namespace() {
    let root = Init::root("pidns");
    Init::write(
        &root,
        "etc/re6st/profile",
        // Leaves an orphan, reparented to PID 1 of the namespace.
        "service.spawner = sh -c \"(sleep 0.2 &); exec sleep 1000\"\n\
         service.other = sleep 1000\n",
    );
    // UTS and IPC too: nothing of the host is ours to change, even if
    // init mistook itself for a real system's.
    let mut init = Init::start(
        root,
        &[
            "unshare", "--pid", "--mount", "--net", "--uts", "--ipc", "--fork",
        ],
    );
    init.wait_running("spawner", 0);
    init.wait_running("other", 0);
    // Reboot by SIGTERM, as busybox init: sent to the init inside (the
    // child of unshare).
    let inner = wait_for_child(init.pid());
    kill(inner, libc::SIGTERM);
    assert_eq!(init.wait_exit(Duration::from_secs(15)), 0);
    let log = init.log();
    assert!(log.contains("no system changes"), "{log}");
    assert!(log.contains("reboot requested (SIGTERM)"), "{log}");
    assert!(log.contains("stopped (reboot)"), "{log}");
    init.assert_clean();
}

/// The only child of `parent`.
fn wait_for_child(parent: i32) -> i32 {
    let mut found = None;
    assert!(wait_until(Duration::from_secs(10), || {
        found = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next()?.parse().ok());
        found.is_some()
    }));
    found.unwrap()
}
