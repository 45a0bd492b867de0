//! Metrics from a real network: `re6st ctl metrics` on a node checked
//! against `re6st ctl status` and the kernel, and the registry's
//! `/metrics` against its database; both pass `promtool check metrics`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use re6st_node::status::metrics::{parse, value_of, Sample};
use re6st_testkit::netns::Lab;
use re6st_testkit::overlay::{ns_of, Overlay, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

/// Every family `re6st ctl metrics` exports; each must have a sample.
const NODE_FAMILIES: &[&str] = &[
    "re6st_node_info",
    "re6st_node_tunnels",
    "re6st_node_served_peers",
    "re6st_node_tunnel_routes",
    "re6st_node_tunnel_receive_bytes_total",
    "re6st_node_tunnel_transmit_bytes_total",
    "re6st_node_babel_routed_nodes",
    "re6st_node_peer_cache_size",
    "re6st_node_registry_reachable",
    "re6st_node_certificate_expiry_seconds",
    "re6st_node_config_version",
    "re6st_node_babeld_restarts_total",
    "re6st_node_openvpn_restarts_total",
    "re6st_system_memory_total_bytes",
    "re6st_system_memory_available_bytes",
    "re6st_system_load1",
    "re6st_system_load5",
    "re6st_system_load15",
    "re6st_system_uptime_seconds",
];

const REGISTRY_FAMILIES: &[&str] = &[
    "re6st_registry_requests_total",
    "re6st_registry_request_duration_seconds",
    "re6st_registry_certificates_issued_total",
    "re6st_registry_certificates",
];

/// `promtool check metrics` (from Debian's prometheus package, `make deps`)
/// on `text`: no error and no lint complaint.
fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus: run make deps)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The families declared by `# TYPE`, and checks that each has a sample.
/// The families a node with this status exports: the served clients'
/// byte counts only when it serves some.
fn node_families(status: &serde_json::Value) -> BTreeSet<String> {
    let mut families: BTreeSet<String> = NODE_FAMILIES.iter().map(|s| s.to_string()).collect();
    if status["served_traffic"]
        .as_array()
        .is_some_and(|t| !t.is_empty())
    {
        families.insert("re6st_node_served_receive_bytes_total".into());
        families.insert("re6st_node_served_transmit_bytes_total".into());
    }
    families
}

fn families_with_samples(text: &str, samples: &[Sample]) -> BTreeSet<String> {
    let families: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    for f in &families {
        assert!(
            samples.iter().any(|s| s.name == *f
                || s.name
                    .strip_prefix(f.as_str())
                    .is_some_and(|rest| ["_bucket", "_sum", "_count"].contains(&rest))),
            "{f} has no sample:\n{text}"
        );
    }
    families
}

fn sh_out(o: &Overlay, ns: &str, cmd: &str) -> String {
    o.lab.sh(ns, cmd)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The node's status (JSON) and metrics, as its owner would read them
/// (in its namespace): status, metrics, status again, until both statuses
/// agree on everything but the counters that always move.
fn node_scrape(o: &Overlay, n: u32) -> (serde_json::Value, String, serde_json::Value) {
    let run = o.node_dir(n).join("run");
    let ctl = |what: &str| {
        sh_out(
            o,
            &ns_of(n),
            &format!("{BIN} ctl {what} -r {}", run.display()),
        )
    };
    let stable = |s: &serde_json::Value| {
        let mut s = s.clone();
        s.as_object_mut().unwrap().remove("system");
        for t in s["tunnels"].as_array_mut().unwrap() {
            let t = t.as_object_mut().unwrap();
            t.remove("rx_bytes");
            t.remove("tx_bytes");
        }
        for t in s["served_traffic"].as_array_mut().unwrap() {
            let t = t.as_object_mut().unwrap();
            t.remove("bytes_received");
            t.remove("bytes_sent");
        }
        s
    };
    for _ in 0..20 {
        let before: serde_json::Value = serde_json::from_str(&ctl("status --json")).unwrap();
        let metrics = ctl("metrics");
        let after: serde_json::Value = serde_json::from_str(&ctl("status --json")).unwrap();
        if stable(&before) == stable(&after) {
            return (before, metrics, after);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("node{n}'s status kept changing\n{}", o.logs());
}

/// An OpenVPN client process whose command line names `node_dir`.
fn openvpn_client_of(node_dir: &std::path::Path) -> Option<u32> {
    let dir = node_dir.display().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_client = args.first()?.ends_with("openvpn")
            && args.iter().any(|a| a == "--client")
            && args.iter().any(|a| a.starts_with(&dir));
        is_client.then_some(pid)
    })
}

/// The pid in file `path`, if any.
fn pid_in(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn node_and_registry_metrics_match_status_and_database() {
    // Node 1 (198.18.2.2) may read the registry's /metrics; node 2 and
    // the registry's own host may not.
    let o = Overlay::start(
        BIN.as_ref(),
        Registry::Ours,
        3,
        None,
        &["--authorized-origin", "198.18.2.2"],
    );
    o.all_pairs_reach(Duration::from_secs(120));
    let n = 1;
    let run = o.node_dir(n).join("run");

    // Restarts: kill node 1's babeld and one of its OpenVPN clients (the
    // node started them; their pids come from its run directory).
    let babeld = pid_in(&run.join("babeld.pid")).expect("babeld.pid");
    let _ = Command::new("kill").arg(babeld.to_string()).status();
    let client = openvpn_client_of(&o.node_dir(n))
        .unwrap_or_else(|| panic!("no OpenVPN client of node1:\n{}", o.logs()));
    let _ = Command::new("kill").arg(client.to_string()).status();
    assert!(
        Lab::wait_until(Duration::from_secs(60), || o.status(n).is_some_and(|s| {
            s["babeld_restarts"] == 1
                && s["openvpn_restarts"].as_u64() >= Some(1)
                && s["tunnels"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["state"] == "established"))
        })),
        "node1 did not count its restarts: {:?}\n{}",
        o.status(n),
        o.logs()
    );
    o.all_pairs_reach(Duration::from_secs(120));

    let (before, text, after) = node_scrape(&o, n);
    promtool_check(&text);
    let m = parse(&text).unwrap();
    let families = families_with_samples(&text, &m);
    assert_eq!(families, node_families(&before), "{text}");
    let v = |name: &str, labels: &[(&str, &str)]| {
        value_of(&m, name, labels).unwrap_or_else(|| panic!("{name} {labels:?}\n{text}"))
    };
    let s = &before;
    assert_eq!(
        v(
            "re6st_node_info",
            &[("address", s["address"].as_str().unwrap())]
        ),
        1.0
    );
    let tunnels = s["tunnels"].as_array().unwrap();
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for t in tunnels {
        *by_state.entry(t["state"].as_str().unwrap()).or_default() += 1;
    }
    for state in ["connecting", "established", "closing", "draining"] {
        assert_eq!(
            v("re6st_node_tunnels", &[("state", state)]),
            by_state.get(state).copied().unwrap_or(0) as f64,
            "{state}: {s}\n{text}"
        );
    }
    assert!(by_state.contains_key("established"), "{s}");
    assert_eq!(
        v("re6st_node_served_peers", &[]),
        s["served"].as_array().unwrap().len() as f64
    );
    let ns_sys = |iface: &str, counter: &str| -> u64 {
        sh_out(
            &o,
            "n1",
            &format!("cat /sys/class/net/{iface}/statistics/{counter}"),
        )
        .trim()
        .parse()
        .unwrap()
    };
    for (t, t_after) in tunnels.iter().zip(after["tunnels"].as_array().unwrap()) {
        let iface = t["iface"].as_str().unwrap();
        let labels = [("iface", iface), ("peer", t["peer"].as_str().unwrap())];
        assert_eq!(
            v("re6st_node_tunnel_routes", &labels),
            t["routes"].as_f64().unwrap()
        );
        for (family, field, counter) in [
            (
                "re6st_node_tunnel_receive_bytes_total",
                "rx_bytes",
                "rx_bytes",
            ),
            (
                "re6st_node_tunnel_transmit_bytes_total",
                "tx_bytes",
                "tx_bytes",
            ),
        ] {
            // Between the two statuses, and the kernel's later count.
            let got = v(family, &labels);
            let (lo, hi) = (t[field].as_f64().unwrap(), t_after[field].as_f64().unwrap());
            assert!(
                lo <= got && got <= hi,
                "{family} {iface}: {lo} <= {got} <= {hi}"
            );
            assert!(got <= ns_sys(iface, counter) as f64);
            // A tunnel babel routes through has carried babel's packets
            // (an established one may not have yet: OpenVPN's own
            // traffic is not the tap's, and the peer's first hello can
            // be a second away).
            if t["state"] == "established" && t["routes"].as_u64() > Some(0) {
                assert!(
                    got > 0.0,
                    "{family} {iface}: babel packets at least\n{text}"
                );
            }
        }
    }
    assert_eq!(
        v("re6st_node_babel_routed_nodes", &[]),
        s["known_nodes"].as_f64().unwrap()
    );
    assert_eq!(v("re6st_node_babel_routed_nodes", &[]), 2.0);
    assert_eq!(
        v("re6st_node_peer_cache_size", &[]),
        s["cached_peers"].as_f64().unwrap()
    );
    assert_eq!(
        v("re6st_node_registry_reachable", &[]),
        if s["registry_cut"] == true { 0.0 } else { 1.0 }
    );
    assert_eq!(v("re6st_node_registry_reachable", &[]), 1.0, "{s}");
    let left = v("re6st_node_certificate_expiry_seconds", &[]);
    let expected = (s["cert_not_after"].as_i64().unwrap() - now()) as f64;
    assert!((left - expected).abs() <= 5.0, "{left} vs {expected}");
    assert!(left > 300.0 * 86_400.0, "{left}");
    assert_eq!(
        v("re6st_node_config_version", &[]),
        s["config_version"].as_f64().unwrap()
    );
    assert!(v("re6st_node_config_version", &[]) >= 1.0);
    assert_eq!(v("re6st_node_babeld_restarts_total", &[]), 1.0);
    assert_eq!(
        v("re6st_node_openvpn_restarts_total", &[]),
        s["openvpn_restarts"].as_f64().unwrap()
    );
    assert!(v("re6st_node_openvpn_restarts_total", &[]) >= 1.0);
    // The host's figures: /proc as read here (the same kernel).
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let mem_total: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap()
        * 1024.0;
    assert_eq!(v("re6st_system_memory_total_bytes", &[]), mem_total);
    assert_eq!(
        v("re6st_system_memory_total_bytes", &[]),
        s["system"]["memory_total_bytes"].as_f64().unwrap()
    );
    let available = v("re6st_system_memory_available_bytes", &[]);
    assert!(available > 0.0 && available < mem_total);
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((v("re6st_system_uptime_seconds", &[]) - uptime).abs() < 30.0);
    for load in [
        "re6st_system_load1",
        "re6st_system_load5",
        "re6st_system_load15",
    ] {
        assert!(v(load, &[]) >= 0.0);
    }
    // Served clients' bytes (OpenVPN's management interface), on every
    // node: node 1's established tunnel is served by one of them.
    let mut served = 0;
    for n in 0..3 {
        let (before, text, after) = node_scrape(&o, n);
        let m = parse(&text).unwrap();
        let traffic = |s: &serde_json::Value| s["served_traffic"].as_array().unwrap().clone();
        if traffic(&before).is_empty() {
            assert!(
                m.iter().all(|s| !s.name.starts_with("re6st_node_served_r")),
                "node{n} serves nobody:\n{text}"
            );
        }
        for (t, t_after) in traffic(&before).iter().zip(traffic(&after).iter()) {
            served += 1;
            let labels = [
                ("peer", t["peer"].as_str().unwrap()),
                ("iface", t["iface"].as_str().unwrap()),
            ];
            for (family, field) in [
                ("re6st_node_served_receive_bytes_total", "bytes_received"),
                ("re6st_node_served_transmit_bytes_total", "bytes_sent"),
            ] {
                let got = value_of(&m, family, &labels)
                    .unwrap_or_else(|| panic!("node{n}: {family} {labels:?}\n{text}"));
                let (lo, hi) = (t[field].as_f64().unwrap(), t_after[field].as_f64().unwrap());
                assert!(
                    lo <= got && got <= hi,
                    "node{n} {family}: {lo} <= {got} <= {hi}"
                );
                assert!(
                    got > 0.0,
                    "node{n} {family} {labels:?}: babel hellos at least"
                );
            }
        }
    }
    assert!(served >= 1, "no node showed a served client");

    // The person's view shows the same restarts and host line.
    let human = sh_out(&o, "n1", &format!("{BIN} ctl status -r {}", run.display()));
    assert!(human.contains("restarts: babeld 1, OpenVPN "), "{human}");
    assert!(human.contains("host: memory "), "{human}");

    // The registry: refused to others (counted as such), then read by
    // node 1 and checked against its database.
    let url = "http://198.18.1.2:9080/metrics";
    let curl = |ns: &str| {
        sh_out(
            &o,
            ns,
            &format!("curl -s -o /dev/null -w '%{{http_code}}' {url}"),
        )
    };
    assert_eq!(curl("n2"), "403");
    assert_eq!(curl("reg"), "403");
    let text = sh_out(&o, "n1", &format!("curl -sf {url}"));
    promtool_check(&text);
    let m = parse(&text).unwrap();
    let families = families_with_samples(&text, &m);
    assert_eq!(
        families,
        REGISTRY_FAMILIES.iter().map(|s| s.to_string()).collect(),
        "{text}"
    );
    let v = |name: &str, labels: &[(&str, &str)]| {
        value_of(&m, name, labels).unwrap_or_else(|| panic!("{name} {labels:?}\n{text}"))
    };
    let db = o.dir.join("registry/registry.db");
    let rows: f64 = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT COUNT(*) FROM cert WHERE cert IS NOT NULL AND cert != 'reserved'")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
        .unwrap();
    // One certificate per node (re6st conf), none renewed.
    assert_eq!(rows, 3.0);
    assert_eq!(v("re6st_registry_certificates", &[]), rows);
    assert_eq!(v("re6st_registry_certificates_issued_total", &[]), rows);
    let requests = "re6st_registry_requests_total";
    let rc = [("method", "requestCertificate"), ("code", "200")];
    assert_eq!(v(requests, &rc), rows);
    assert_eq!(v(requests, &[("method", "/metrics"), ("code", "403")]), 2.0);
    // This scrape is counted once it is answered.
    assert_eq!(v(requests, &[("method", "/metrics"), ("code", "200")]), 0.0);
    let count = v(
        "re6st_registry_request_duration_seconds_count",
        &[("method", "requestCertificate")],
    );
    assert_eq!(count, rows);
    let inf = v(
        "re6st_registry_request_duration_seconds_bucket",
        &[("method", "requestCertificate"), ("le", "+Inf")],
    );
    assert_eq!(inf, rows);
    assert!(
        v(
            "re6st_registry_request_duration_seconds_sum",
            &[("method", "requestCertificate")]
        ) > 0.0
    );
    // Every request the registry answered is in some method's count:
    // nodes said hello and fetched their network configuration.
    for method in ["hello", "getCa", "getNetworkConfig"] {
        let total: f64 = m
            .iter()
            .filter(|s| {
                s.name == requests && s.labels.iter().any(|(k, v)| k == "method" && v == method)
            })
            .map(|s| s.value)
            .sum();
        assert!(total >= 1.0, "{method}\n{text}");
    }
    let again = sh_out(&o, "n1", &format!("curl -sf {url}"));
    let m = parse(&again).unwrap();
    assert_eq!(
        value_of(&m, requests, &[("method", "/metrics"), ("code", "200")]),
        Some(1.0),
        "{again}"
    );
    o.finish();
}
