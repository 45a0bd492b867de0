//! re6st networks in namespaces: a registry (ours or upstream's) with its
//! own node, and nodes that provision themselves, bootstrap through the
//! registry, open OpenVPN tunnels and route with babeld until they reach
//! each other; then failures: registry down, restarts, corrupt state,
//! garbage datagrams.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use re6st_testkit::netns::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

#[derive(Clone, Copy, PartialEq)]
enum Registry {
    Ours,
    Upstream,
}

struct Overlay {
    lab: Lab,
    dir: PathBuf,
    nodes: u32,
    /// re6st address of each node.
    addrs: Vec<String>,
    registry_pid: u32,
    node_pids: Vec<u32>,
}

fn ns_of(n: u32) -> String {
    if n == 0 {
        "reg".into()
    } else {
        format!("n{n}")
    }
}

impl Overlay {
    fn node_dir(&self, n: u32) -> PathBuf {
        self.dir.join(format!("node{n}"))
    }

    fn start_node(&mut self, n: u32) -> u32 {
        let d = self.node_dir(n);
        let p = |s: &str| d.join(s).display().to_string();
        let args: Vec<String> = vec![
            BIN.into(),
            "node".into(),
            format!("@{}", p("re6stnet.conf")),
            "--ca".into(),
            p("ca.crt"),
            "--cert".into(),
            p("cert.crt"),
            "--key".into(),
            p("cert.key"),
            "--ip".into(),
            format!("198.18.{}.2", n + 1),
            "-s".into(),
            p("state"),
            "-r".into(),
            p("run"),
            "-l".into(),
            p("log"),
            "-v".into(),
            "3".into(),
        ];
        let log = d.join(format!("node-{}.out", self.node_pids.len()));
        let pid = self.lab.spawn(
            &ns_of(n),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &log,
        );
        self.node_pids.push(pid);
        pid
    }

    fn logs(&self) -> String {
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
    fn all_pairs_reach(&self, limit: Duration) {
        for a in 0..self.nodes {
            for (b, to) in self.addrs.iter().enumerate() {
                if a as usize == b {
                    continue;
                }
                let ok = Lab::wait_until(limit, || {
                    self.lab.try_sh(&ns_of(a), &format!("ping -6 -c1 -W1 {to}"))
                });
                assert!(ok, "node{a} cannot reach node{b} ({to})\n{}", self.logs());
            }
        }
    }

    fn start(kind: Registry, nodes: u32, cut: Option<(u32, u32)>) -> Overlay {
        let dir =
            std::env::temp_dir().join(format!("re6st-overlay-{}-{nodes}", std::process::id()));
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
        let reg = dir.join("registry");
        let out = Command::new(BIN)
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
            Registry::Ours => vec![BIN.into(), "registry".into()],
            Registry::Upstream => {
                let py = re6st_testkit::upstream_python();
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
                "--hello",
                "4",
                "--client-count",
                "2",
            ]
            .map(String::from),
        );
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
            dir,
            nodes,
            addrs: Vec::new(),
            registry_pid,
            node_pids: Vec::new(),
        };
        for n in 0..nodes {
            let d = o.node_dir(n);
            std::fs::create_dir_all(&d).unwrap();
            let conf = o.lab.sh(
                &ns_of(n),
                &format!(
                    "{BIN} conf --registry http://198.18.1.2:9080/ --anonymous --dir {} 2>&1",
                    d.display()
                ),
            );
            let subnet = conf
                .lines()
                .find_map(|l| l.strip_prefix("Your subnet: "))
                .unwrap_or_else(|| panic!("{conf}"));
            let net = subnet.split('/').next().unwrap();
            o.addrs.push(format!("{net}1"));
            o.start_node(n);
        }
        o
    }

    fn finish(self) {
        let dir = self.dir.clone();
        drop(self.lab);
        std::fs::remove_dir_all(&dir).ok();
    }
}

fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

#[test]
fn nodes_reach_each_other_over_the_overlay() {
    // Our registry's node and 7 more; nodes 6 and 7 cannot reach each
    // other directly.
    let o = Overlay::start(Registry::Ours, 8, Some((6, 7)));
    o.all_pairs_reach(Duration::from_secs(120));
    let route = o.lab.sh("n1", &format!("ip -6 route get {}", o.addrs[2]));
    assert!(route.contains("re6stnet"), "{route}");
    assert!(
        !o.lab.try_sh("n6", "ping -c1 -W1 198.18.8.2"),
        "underlay should be cut"
    );
    let route = o.lab.sh("n6", &format!("ip -6 route get {}", o.addrs[7]));
    assert!(route.contains("re6stnet"), "{route}");
    o.finish();
}

#[test]
fn nodes_join_a_network_run_by_upstreams_registry() {
    // Upstream's registry (re6stnet 0.642) provisions every node and reads
    // routes from our node0 through its babeld.sock (upstream's protocol,
    // served by our node from stock babeld) to answer getBootstrapPeer.
    let o = Overlay::start(Registry::Upstream, 4, Some((2, 3)));
    o.all_pairs_reach(Duration::from_secs(120));
    let route = o.lab.sh("n2", &format!("ip -6 route get {}", o.addrs[3]));
    assert!(route.contains("re6stnet"), "{route}");
    let log = std::fs::read_to_string(o.dir.join("registry/registry.log")).unwrap_or_default();
    assert!(log.contains("Sending bootstrap peer"), "{log}");
    // What upstream's registry reads from node0's babeld.sock: a route to
    // every other node.
    let sock = o.node_dir(0).join("run/babeld.sock");
    let script = "import logging, sys\nlogging.trace = lambda *a, **k: None\n\
        from re6st import ctl, utils\n\
        net = utils.binFromIp('2001:db8:42::')[:48]\n\
        print(sorted(utils.ipFromBin(net + p) for p in ctl.iterRoutes(sys.argv[1], net)))";
    let seen = re6st_testkit::run_upstream(script, &[&sock.display().to_string()], b"");
    let seen = String::from_utf8_lossy(&seen);
    for n in 1..4 {
        let net = o.addrs[n].strip_suffix('1').unwrap();
        assert!(
            seen.contains(&format!("'{net}'")),
            "node{n} ({net}) missing: {seen}"
        );
    }
    o.finish();
}

#[test]
fn survives_registry_loss_restarts_corrupt_state_and_garbage() {
    let mut o = Overlay::start(Registry::Ours, 4, None);
    o.all_pairs_reach(Duration::from_secs(120));

    // Corrupt state files: a restarted node logs it, starts over, rejoins.
    let n3 = o.node_pids[3];
    signal("-TERM", n3);
    assert!(
        Lab::wait_until(Duration::from_secs(10), || !o
            .lab
            .try_sh("n3", "ip link show re6stnet1")),
        "taps left behind"
    );
    assert!(
        !o.lab
            .sh("n3", "ip -6 addr show dev lo")
            .contains("2001:db8:42"),
        "address left behind"
    );
    for f in ["peers.bin", "network-config.bin"] {
        std::fs::write(
            o.node_dir(3).join("state").join(f),
            b"re6stpc1\xff\xff garbage",
        )
        .unwrap();
    }
    o.start_node(3);
    o.all_pairs_reach(Duration::from_secs(120));

    // Garbage, truncated and replayed-looking datagrams on port 326.
    let target = o.addrs[1].clone();
    let script = format!(
        "import socket, os\ns = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
         for n in [0, 1, 3, 4, 5, 24, 100, 1400]:\n    s.sendto(os.urandom(n), ('{target}', 326))\n\
         for seq in [0, 1, 2, 3, 99]:\n    s.sendto(seq.to_bytes(4, 'big') + os.urandom(40), ('{target}', 326))\n\
         s.sendto(b'0101\\x00\\x01', ('::1', 326))\n"
    );
    for ns in ["n2", "n1"] {
        o.lab.sh(
            ns,
            &format!("python3 -c \"{}\"", script.replace('"', "\\\"")),
        );
    }
    o.all_pairs_reach(Duration::from_secs(30));

    // The registry goes away: the network stays connected, and a node
    // restarted now rejoins from its caches.
    signal("-KILL", o.registry_pid);
    let n2 = o.node_pids[2];
    signal("-TERM", n2);
    assert!(Lab::wait_until(Duration::from_secs(10), || !o
        .lab
        .try_sh("n2", "ip link show re6stnet1")));
    o.start_node(2);
    o.all_pairs_reach(Duration::from_secs(120));
    let log = std::fs::read_to_string(
        o.node_dir(2)
            .join(format!("node-{}.out", o.node_pids.len() - 1)),
    )
    .unwrap_or_default();
    assert!(
        log.contains("using the cached network configuration"),
        "{log}"
    );
    o.finish();
}
