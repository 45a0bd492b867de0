//! A small re6st network in namespaces: our registry with its own node,
//! and nodes that provision themselves, bootstrap through the registry,
//! open OpenVPN tunnels and route with babeld until they reach each other.

use std::path::{Path, PathBuf};
use std::time::Duration;

use re6st_testkit::netns::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_re6st");
/// The registry's own node and 7 more (issue: 8 nodes and a registry).
const NODES: u32 = 8;

fn node_args(dir: &Path, ip: &str) -> Vec<String> {
    let d = |s: &str| dir.join(s).display().to_string();
    vec![
        BIN.into(),
        "node".into(),
        format!("@{}", d("re6stnet.conf")),
        "--ca".into(),
        d("ca.crt"),
        "--cert".into(),
        d("cert.crt"),
        "--key".into(),
        d("cert.key"),
        "--ip".into(),
        ip.into(),
        "-s".into(),
        d("state"),
        "-r".into(),
        d("run"),
        "-l".into(),
        d("log"),
        "-v".into(),
        "3".into(),
    ]
}

#[test]
fn nodes_reach_each_other_over_the_overlay() {
    let dir = std::env::temp_dir().join(format!("re6st-overlay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut lab = Lab::new();
    lab.add_ns("inet");
    let host = |lab: &mut Lab, name: &str, i: u32| {
        lab.add_ns(name);
        lab.link(
            "inet",
            &[&format!("198.18.{i}.1/24")],
            name,
            &[&format!("198.18.{i}.2/24")],
            &format!("h{i}"),
        );
        lab.sh(
            name,
            &format!(
                "ip link set h{i} name eth0 2>/dev/null; ip route add default via 198.18.{i}.1"
            ),
        );
    };
    host(&mut lab, "reg", 1);
    // Not every node can reach every other directly: the "internet" drops
    // traffic between the last two nodes' networks.
    lab.sh(
        "inet",
        &format!("iptables -A FORWARD -s 198.18.{a}.0/24 -d 198.18.{b}.0/24 -j DROP; iptables -A FORWARD -s 198.18.{b}.0/24 -d 198.18.{a}.0/24 -j DROP", a = NODES - 1, b = NODES),
    );
    // The registry, for 2001:db8:42::/48, sharing its run directory with
    // its own node (babeld's socket).
    let reg = dir.join("registry");
    let out = std::process::Command::new(BIN)
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
    let reg_args: Vec<String> = vec![
        BIN.into(),
        "registry".into(),
        "--port".into(),
        "9080".into(),
        "-4".into(),
        "198.18.1.2".into(),
        "-6".into(),
        String::new(),
        "--ca".into(),
        r("ca.crt"),
        "--key".into(),
        r("ca.key"),
        "--dh".into(),
        r("dh.pem"),
        "--db".into(),
        r("registry.db"),
        "-l".into(),
        r("registry.log"),
        "-r".into(),
        dir.join("node0/run").display().to_string(),
        "--anonymous-prefix-length".into(),
        "16".into(),
        "--hello".into(),
        "4".into(),
        "--client-count".into(),
        "2".into(),
    ];
    lab.spawn(
        "reg",
        &reg_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &dir.join("registry.out"),
    );
    assert!(
        Lab::wait_until(Duration::from_secs(10), || lab
            .try_sh("reg", "bash -c 'exec 3<>/dev/tcp/198.18.1.2/9080'")),
        "registry did not start"
    );
    let mut dirs: Vec<PathBuf> = Vec::new();
    for n in 0..NODES {
        let (ns, i) = if n == 0 {
            ("reg".to_string(), 1)
        } else {
            (format!("n{n}"), n + 1)
        };
        if n > 0 {
            host(&mut lab, &ns, i);
        }
        let d = dir.join(format!("node{n}"));
        std::fs::create_dir_all(&d).unwrap();
        let conf = lab.sh(
            &ns,
            &format!(
                "{BIN} conf --registry http://198.18.1.2:9080/ --anonymous --dir {} 2>&1",
                d.display()
            ),
        );
        assert!(conf.contains("Your subnet"), "{conf}");
        let args = node_args(&d, &format!("198.18.{i}.2"));
        lab.spawn(
            &ns,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &d.join("node.out"),
        );
        dirs.push(d);
    }
    let logs = |dirs: &[PathBuf]| {
        dirs.iter()
            .map(|d| {
                format!(
                    "== {}\n{}",
                    d.display(),
                    std::fs::read_to_string(d.join("node.out")).unwrap_or_default()
                )
            })
            .collect::<String>()
    };
    // Every node pings every other node's re6st address.
    let subnet_of = |d: &Path| -> String {
        let conf = std::fs::read_to_string(d.join("node.out")).unwrap_or_default();
        conf.lines()
            .find_map(|l| l.split("address ").nth(1).map(str::to_owned))
            .unwrap_or_default()
    };
    assert!(
        Lab::wait_until(Duration::from_secs(15), || dirs
            .iter()
            .all(|d| !subnet_of(d).is_empty())),
        "nodes did not start\n{}",
        logs(&dirs)
    );
    let addrs: Vec<String> = dirs.iter().map(|d| subnet_of(d)).collect();
    for (a, from) in dirs.iter().enumerate() {
        let ns = if a == 0 {
            "reg".to_string()
        } else {
            format!("n{a}")
        };
        for (b, to) in addrs.iter().enumerate() {
            if a == b {
                continue;
            }
            let ok = Lab::wait_until(Duration::from_secs(120), || {
                lab.try_sh(&ns, &format!("ping -6 -c1 -W1 {to}"))
            });
            assert!(ok, "node{a} cannot reach node{b} ({to})\n{}", logs(&dirs));
            let _ = from;
        }
    }
    // The routes go through tunnels (OpenVPN taps), also between the two
    // nodes that cannot reach each other directly.
    let route = lab.sh("n1", &format!("ip -6 route get {}", addrs[2]));
    assert!(route.contains("re6stnet"), "{route}");
    let (a, b) = (NODES as usize - 2, NODES as usize - 1);
    assert!(
        !lab.try_sh(
            &format!("n{a}"),
            &format!("ping -c1 -W1 198.18.{}.2", b + 1)
        ),
        "underlay should be cut"
    );
    let route = lab.sh(&format!("n{a}"), &format!("ip -6 route get {}", addrs[b]));
    assert!(route.contains("re6stnet"), "{route}");
    drop(lab);
    std::fs::remove_dir_all(&dir).ok();
}
