//! `re6st-bench path`: the overlay against the direct path between two
//! nodes of a network in namespaces (registry + N nodes, see
//! `re6st_testkit::overlay`), once the two reach each other:
//! - TCP throughput with iperf3 (`-t SECONDS`), from the first node to the
//!   second;
//! - round-trip times with ping (`-c PINGS -i 0.1`): mean, median, p95;
//!
//! once to the second node's underlay IPv4 address (through the simulated
//! internet, one router), once to its re6st address (through the OpenVPN
//! tunnel(s) and babeld's routes). The reply's TTL / hop limit says how
//! many routers the answer went through.
//!
//! Options: `--binary PATH --nodes N --client-count C --seconds S --pings P
//! --json PATH`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::arg;
use re6st_testkit::netns::Lab;
use re6st_testkit::overlay::{ns_of, Overlay, Registry};

const PORT: u16 = 5201;

struct Ping {
    sent: usize,
    rtts_ms: Vec<f64>,
    ttl: Option<u32>,
}

fn ping(o: &Overlay, from: u32, to: &str, count: usize) -> Ping {
    let out = o.lab.sh(
        &ns_of(from),
        &format!("ping -n -c {count} -i 0.1 -W 2 {to} 2>&1; true"),
    );
    let field = |l: &str, key: &str| -> Option<String> {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_owned)
    };
    let replies: Vec<&str> = out.lines().filter(|l| l.contains("time=")).collect();
    Ping {
        sent: count,
        rtts_ms: replies
            .iter()
            .filter_map(|l| field(l, "time=")?.parse().ok())
            .collect(),
        ttl: replies.iter().find_map(|l| field(l, "ttl=")?.parse().ok()),
    }
}

/// iperf3 TCP from `from` to the server on `to`: (received bit/s, sender
/// retransmits), or the error.
fn iperf(o: &Overlay, from: u32, to: &str, seconds: u64) -> Result<(f64, u64), String> {
    let out = o.lab.sh(
        &ns_of(from),
        &format!(
            "timeout {} iperf3 -c {to} -p {PORT} -t {seconds} -J 2>&1; true",
            seconds + 30
        ),
    );
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("iperf3: {e}: {out}"))?;
    if let Some(e) = v["error"].as_str() {
        return Err(format!("iperf3: {e}"));
    }
    let bps = v
        .pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| format!("iperf3: no result: {out}"))?;
    let retransmits = v
        .pointer("/end/sum_sent/retransmits")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    Ok((bps, retransmits))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

pub fn main(args: Vec<String>) {
    let bin = PathBuf::from(arg(&args, "--binary", "target/release/re6st"));
    let nodes: u32 = arg(&args, "--nodes", "3").parse().expect("--nodes");
    assert!(nodes >= 2, "--nodes: at least 2");
    let client_count = arg(&args, "--client-count", "2");
    let seconds: u64 = arg(&args, "--seconds", "5").parse().expect("--seconds");
    let pings: usize = arg(&args, "--pings", "50").parse().expect("--pings");
    let json_path = arg(&args, "--json", "");
    let bin = std::fs::canonicalize(&bin).expect("--binary");

    let mut o = Overlay::start(
        &bin,
        Registry::Ours,
        nodes,
        None,
        &["--client-count", &client_count],
    );
    // The last two nodes (not the registry's own node when there are 3+).
    let (a, b) = (nodes - 2, nodes - 1);
    let t0 = Instant::now();
    let limit = Duration::from_secs(300);
    let reach = |o: &Overlay, x: u32, y: u32| {
        o.lab.try_sh(
            &ns_of(x),
            &format!("ping -6 -c1 -W1 {}", o.addrs[y as usize]),
        )
    };
    assert!(
        Lab::wait_until(limit, || reach(&o, a, b) && reach(&o, b, a)),
        "node{a} and node{b} do not reach each other over the overlay\n{}",
        o.logs()
    );
    eprintln!(
        "bench: node{a} and node{b} reach each other over the overlay {:.1}s after the last start",
        t0.elapsed().as_secs_f64()
    );
    // Let routes settle (babel hello 4 s in the test network).
    std::thread::sleep(Duration::from_secs(10));
    let log = o.dir.join("iperf3-server.out");
    o.lab
        .spawn(&ns_of(b), &["iperf3", "-s", "-p", &PORT.to_string()], &log);
    assert!(
        Lab::wait_until(Duration::from_secs(10), || o.lab.try_sh(
            &ns_of(b),
            &format!("ss -Htln 'sport = :{PORT}' | grep -q .")
        )),
        "iperf3 server did not start"
    );

    let paths = [
        ("direct", format!("198.18.{}.2", b + 1)),
        ("overlay", o.addrs[b as usize].clone()),
    ];
    let mut rows = Vec::new();
    for (name, to) in &paths {
        let p = ping(&o, a, to, pings);
        let tcp = iperf(&o, a, to, seconds);
        if let Err(e) = &tcp {
            eprintln!("bench: {name} path: {e}");
        }
        let mut sorted = p.rtts_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let mean = sorted.iter().sum::<f64>() / sorted.len().max(1) as f64;
        rows.push(serde_json::json!({
            "path": name,
            "to": to,
            "tcp_mbit_per_s": tcp.as_ref().ok().map(|t| t.0 / 1e6),
            "tcp_retransmits": tcp.as_ref().ok().map(|t| t.1),
            "tcp_error": tcp.as_ref().err(),
            "pings_sent": p.sent,
            "pings_answered": p.rtts_ms.len(),
            "rtt_ms_mean": if sorted.is_empty() { None } else { Some(mean) },
            "rtt_ms_p50": if sorted.is_empty() { None } else { Some(percentile(&sorted, 50.0)) },
            "rtt_ms_p95": if sorted.is_empty() { None } else { Some(percentile(&sorted, 95.0)) },
            "reply_ttl": p.ttl,
        }));
    }
    let tunnels: Vec<usize> = [a, b]
        .iter()
        .map(|n| {
            crate::node::children(o.node_pids[*n as usize])
                .iter()
                .filter(|(_, c)| c == "openvpn")
                .count()
        })
        .collect();
    o.finish();

    let get = |r: &serde_json::Value, k: &str| r[k].as_f64();
    let fmt = |x: Option<f64>, d: usize| x.map_or("-".to_owned(), |x| format!("{x:.d$}"));
    println!(
        "| path | to | TCP Mbit/s | retransmits | RTT ms mean | p50 | p95 | answered | reply TTL |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {}/{} | {} |",
            r["path"].as_str().unwrap_or(""),
            r["to"].as_str().unwrap_or(""),
            fmt(get(r, "tcp_mbit_per_s"), 0),
            r["tcp_retransmits"]
                .as_u64()
                .map_or("-".into(), |x| x.to_string()),
            fmt(get(r, "rtt_ms_mean"), 3),
            fmt(get(r, "rtt_ms_p50"), 3),
            fmt(get(r, "rtt_ms_p95"), 3),
            r["pings_answered"],
            r["pings_sent"],
            r["reply_ttl"]
                .as_u64()
                .map_or("-".into(), |x| x.to_string()),
        );
    }
    let ratio = |k: &str| match (get(&rows[1], k), get(&rows[0], k)) {
        (Some(ov), Some(d)) if d > 0.0 => Some(ov / d),
        _ => None,
    };
    let (tcp_ratio, rtt_ratio) = (ratio("tcp_mbit_per_s"), ratio("rtt_ms_p50"));
    println!(
        "\noverlay / direct: TCP throughput {}x, median RTT {}x (OpenVPN processes of the two nodes: {} and {})",
        fmt(tcp_ratio, 3),
        fmt(rtt_ratio, 2),
        tunnels[0],
        tunnels[1],
    );
    if !json_path.is_empty() {
        let json = serde_json::json!({
            "nodes": nodes,
            "client_count": client_count,
            "from": a,
            "to": b,
            "iperf3_seconds": seconds,
            "paths": rows,
            "ratio_tcp_overlay_over_direct": tcp_ratio,
            "ratio_rtt_p50_overlay_over_direct": rtt_ratio,
            "openvpn_processes": tunnels,
        });
        std::fs::write(&json_path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }
}
