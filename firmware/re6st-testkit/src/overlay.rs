//! A whole re6st network in namespaces, for tests and benchmarks: a
//! registry (ours or upstream's) with its own node, and nodes that
//! provision themselves with `re6st conf` and run `re6st node`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::netns::Lab;

#[derive(Clone, Copy, PartialEq)]
pub enum Registry {
    Ours,
    Upstream,
}

pub struct Overlay {
    pub lab: Lab,
    /// Our multi-call binary.
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub nodes: u32,
    /// re6st address of each node.
    pub addrs: Vec<String>,
    pub registry_pid: u32,
    /// The registry's command line, to restart it.
    pub registry_argv: Vec<String>,
    /// Every node process started, in order (restarts append).
    pub node_pids: Vec<u32>,
}

/// In a node's extra arguments: start it without the default `--ip` (its
/// underlay address), e.g. behind a NAT router. Any `--ip` given in the
/// extra arguments replaces the default as well.
pub const NO_UNDERLAY_IP: &str = "--testkit-no-underlay-ip";

pub fn ns_of(n: u32) -> String {
    if n == 0 {
        "reg".into()
    } else {
        format!("n{n}")
    }
}

impl Overlay {
    pub fn node_dir(&self, n: u32) -> PathBuf {
        self.dir.join(format!("node{n}"))
    }

    pub fn start_node(&mut self, n: u32) -> u32 {
        self.start_node_with(n, &[])
    }

    /// Starts node `n` with more options on its command line.
    pub fn start_node_with(&mut self, n: u32, extra: &[&str]) -> u32 {
        let d = self.node_dir(n);
        let p = |s: &str| d.join(s).display().to_string();
        let default_ip = !extra.contains(&NO_UNDERLAY_IP) && !extra.contains(&"--ip");
        let extra: Vec<&str> = extra
            .iter()
            .copied()
            .filter(|a| *a != NO_UNDERLAY_IP)
            .collect();
        let mut args: Vec<String> = vec![
            self.bin.display().to_string(),
            "node".into(),
            format!("@{}", p("re6stnet.conf")),
            "--ca".into(),
            p("ca.crt"),
            "--cert".into(),
            p("cert.crt"),
            "--key".into(),
            p("cert.key"),
            "-s".into(),
            p("state"),
            "-r".into(),
            p("run"),
            "-l".into(),
            p("log"),
            "-v".into(),
            "3".into(),
        ];
        if default_ip {
            args.extend(["--ip".into(), format!("198.18.{}.2", n + 1)]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let log = d.join(format!("node-{}.out", self.node_pids.len()));
        let pid = self.lab.spawn(
            &ns_of(n),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &log,
        );
        self.node_pids.push(pid);
        pid
    }

    /// Sends `signal` (e.g. "-TERM") to the node process `pid` and waits
    /// up to `limit` for it to exit: a node is stopped once its clean-up
    /// is done, not when its taps are gone.
    pub fn stop_node(&self, pid: u32, signal: &str, limit: Duration) {
        let _ = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status();
        assert!(
            Lab::wait_until(limit, || !crate::netns::alive(pid)),
            "node process {pid} still running {limit:?} after kill {signal}\n{}",
            self.logs()
        );
    }

    /// `re6st ctl status --json` of node `n`, if it answers.
    pub fn status(&self, n: u32) -> Option<serde_json::Value> {
        self.try_status(n).ok()
    }

    /// `re6st ctl status --json` of node `n`, or why there is none (what
    /// the command said).
    pub fn try_status(&self, n: u32) -> Result<serde_json::Value, String> {
        let out = Command::new(&self.bin)
            .args(["ctl", "status", "--json", "-r"])
            .arg(self.node_dir(n).join("run"))
            .output()
            .map_err(|e| format!("re6st ctl: {e}"))?;
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "node{n}'s status: {e} ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// What node `n`'s processes wrote to their stdout and stderr, every
    /// run in start order. Panics when the node's directory or one of
    /// those files cannot be read, or there is none: a check on this text
    /// (e.g. that nothing panicked) must not pass on a log never read.
    pub fn node_output(&self, n: u32) -> String {
        let dir = self.node_dir(n);
        let mut runs: Vec<(usize, PathBuf)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap_or_else(|e| panic!("{}: {e}", dir.display())))
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let run = name
                    .strip_prefix("node-")?
                    .strip_suffix(".out")?
                    .parse()
                    .ok()?;
                Some((run, e.path()))
            })
            .collect();
        assert!(
            !runs.is_empty(),
            "no output of node{n} in {}",
            dir.display()
        );
        runs.sort();
        runs.iter()
            .map(|(_, p)| {
                // Lossy: a stray non-UTF-8 byte must not hide the rest.
                let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .collect()
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for n in 0..self.nodes {
            for e in std::fs::read_dir(self.node_dir(n))
                .into_iter()
                .flatten()
                .flatten()
            {
                if e.file_name().to_string_lossy().starts_with("node-") {
                    s += &format!(
                        "== node{n} {}\n{}",
                        e.path().display(),
                        std::fs::read_to_string(e.path()).unwrap_or_default()
                    );
                }
            }
        }
        s
    }

    /// Waits until every node pings every other node's re6st address.
    pub fn all_pairs_reach(&self, limit: Duration) {
        for a in 0..self.nodes {
            for (b, to) in self.addrs.iter().enumerate() {
                if a as usize == b {
                    continue;
                }
                let t = std::time::Instant::now();
                let ok = Lab::wait_until(limit, || {
                    self.lab.try_sh(&ns_of(a), &format!("ping -6 -c1 -W1 {to}"))
                });
                assert!(ok, "node{a} cannot reach node{b} ({to})\n{}", self.logs());
                // Which pair a slow convergence waited for.
                if t.elapsed() > Duration::from_secs(5) {
                    eprintln!(
                        "all_pairs_reach: node{a} -> node{b} took {:.1} s",
                        t.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }

    /// A registry in namespace `reg` (with node0 beside it) and `nodes - 1`
    /// more nodes, each in its own namespace behind a simulated IPv4
    /// internet (`inet`, 198.18.0.0/15); `cut` drops traffic between two
    /// nodes' underlay addresses; `registry_args` are appended to the
    /// registry's command line.
    pub fn start(
        bin: &Path,
        kind: Registry,
        nodes: u32,
        cut: Option<(u32, u32)>,
        registry_args: &[&str],
    ) -> Overlay {
        Self::start_with(bin, kind, nodes, cut, registry_args, &|_| {}, &|_| vec![])
    }

    /// [`Overlay::start`], with `setup` run on the lab once the node
    /// namespaces exist (before any node starts), and `node_args(n)`
    /// appended to node `n`'s command line.
    #[allow(clippy::type_complexity)]
    pub fn start_with(
        bin: &Path,
        kind: Registry,
        nodes: u32,
        cut: Option<(u32, u32)>,
        registry_args: &[&str],
        setup: &dyn Fn(&mut Lab),
        node_args: &dyn Fn(u32) -> Vec<String>,
    ) -> Overlay {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("re6st-overlay-{}-{n}-{nodes}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab::new();
        lab.add_ns("inet");
        for n in 0..nodes {
            let (name, i) = (ns_of(n), n + 1);
            lab.add_ns(&name);
            lab.link(
                "inet",
                &[&format!("198.18.{i}.1/24")],
                &name,
                &[&format!("198.18.{i}.2/24")],
                &format!("h{i}"),
            );
            lab.sh(&name, &format!("ip route add default via 198.18.{i}.1"));
        }
        if let Some((a, b)) = cut {
            let (a, b) = (a + 1, b + 1);
            lab.sh("inet", &format!("iptables -A FORWARD -s 198.18.{a}.0/24 -d 198.18.{b}.0/24 -j DROP; iptables -A FORWARD -s 198.18.{b}.0/24 -d 198.18.{a}.0/24 -j DROP"));
        }
        setup(&mut lab);
        let reg = dir.join("registry");
        let out = Command::new(bin)
            .args(["registry", "--init-network", "2001:db8:42::/48", "--dir"])
            .arg(&reg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = |s: &str| reg.join(s).display().to_string();
        let mut args: Vec<String> = match kind {
            Registry::Ours => vec![bin.display().to_string(), "registry".into()],
            Registry::Upstream => {
                let py = crate::upstream_python();
                let script = py.parent().unwrap().join("re6st-registry");
                vec![py.display().to_string(), script.display().to_string()]
            }
        };
        args.extend(
            [
                "--port",
                "9080",
                "-4",
                "198.18.1.2",
                "-6",
                "",
                "--ca",
                &r("ca.crt"),
                "--key",
                &r("ca.key"),
                "--dh",
                &r("dh.pem"),
                "--db",
                &r("registry.db"),
                "-l",
                &r("registry.log"),
                "-r",
                &dir.join("node0/run").display().to_string(),
                "--anonymous-prefix-length",
                "16",
            ]
            .map(String::from),
        );
        // Defaults for a quick small network, unless the caller says.
        for (opt, value) in [("--hello", "4"), ("--client-count", "2")] {
            if !registry_args.contains(&opt) {
                args.extend([opt.to_string(), value.to_string()]);
            }
        }
        args.extend(registry_args.iter().map(|a| a.to_string()));
        if kind == Registry::Upstream {
            // INFO: its log says which bootstrap peers it hands out.
            args.extend(["-v".into(), "2".into()]);
        }
        let registry_pid = lab.spawn(
            "reg",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &dir.join("registry.out"),
        );
        assert!(
            Lab::wait_until(Duration::from_secs(20), || lab
                .try_sh("reg", "bash -c 'exec 3<>/dev/tcp/198.18.1.2/9080'")),
            "registry did not start: {}",
            std::fs::read_to_string(dir.join("registry.out")).unwrap_or_default()
        );
        let mut o = Overlay {
            lab,
            bin: bin.to_owned(),
            dir,
            nodes,
            addrs: Vec::new(),
            registry_pid,
            registry_argv: args.clone(),
            node_pids: Vec::new(),
        };
        for n in 0..nodes {
            let d = o.node_dir(n);
            std::fs::create_dir_all(&d).unwrap();
            let conf = o.lab.sh(
                &ns_of(n),
                &format!(
                    "{} conf --registry http://198.18.1.2:9080/ --anonymous --dir {} 2>&1",
                    bin.display(),
                    d.display()
                ),
            );
            let subnet = conf
                .lines()
                .find_map(|l| l.strip_prefix("Your subnet: "))
                .unwrap_or_else(|| panic!("{conf}"));
            let net = subnet.split('/').next().unwrap();
            o.addrs.push(format!("{net}1"));
            let extra = node_args(n);
            o.start_node_with(n, &extra.iter().map(String::as_str).collect::<Vec<_>>());
        }
        o
    }

    /// Stops the registry (SIGTERM) and starts it again with `changes`
    /// (option, new value) applied to its command line.
    pub fn restart_registry(&mut self, changes: &[(&str, &str)]) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.registry_pid.to_string()])
            .status();
        let pid = self.registry_pid;
        Lab::wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z "))
        });
        for (opt, value) in changes {
            match self.registry_argv.iter().position(|a| a == opt) {
                Some(i) => self.registry_argv[i + 1] = value.to_string(),
                None => self
                    .registry_argv
                    .extend([opt.to_string(), value.to_string()]),
            }
        }
        let argv = self.registry_argv.clone();
        self.registry_pid = self.lab.spawn(
            "reg",
            &argv.iter().map(String::as_str).collect::<Vec<_>>(),
            &self.dir.join("registry-restarted.out"),
        );
        assert!(
            Lab::wait_until(Duration::from_secs(20), || self
                .lab
                .try_sh("reg", "bash -c 'exec 3<>/dev/tcp/198.18.1.2/9080'")),
            "registry did not restart"
        );
    }

    /// The node's CN (`value/length` of its prefix), from its certificate.
    pub fn cn(&self, n: u32) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-nameopt", "multiline", "-in"])
            .arg(self.node_dir(n).join("cert.crt"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix("commonName"))
            .and_then(|l| l.split('=').nth(1))
            .map(|v| v.trim().to_owned())
            .expect("CN")
    }

    pub fn finish(self) {
        let dir = self.dir.clone();
        drop(self.lab);
        remove_dir(&dir);
    }
}

/// Removes an overlay's directory, unless `RE6ST_KEEP_DIRS` is set (to
/// read the nodes' logs afterwards).
pub fn remove_dir(dir: &Path) {
    if std::env::var_os("RE6ST_KEEP_DIRS").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
