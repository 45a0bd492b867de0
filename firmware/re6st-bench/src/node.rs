//! `re6st-bench node`: a whole network of our nodes in namespaces
//! (registry + N nodes, see `re6st_testkit::overlay`):
//! - time from the start (registry, provisioning of every node, node
//!   start) to full connectivity (every node pings every other over the
//!   overlay), and from the last node's start; per node, when it first
//!   reached every other node; the fraction of pairs that answer, per
//!   ping round (for the convergence plot);
//! - at steady state, per node: resident memory and CPU of our daemon,
//!   tunnels open, and the memory of its babeld and OpenVPN children.
//!
//! Options: `--binary PATH --nodes N --client-count C --settle SECONDS
//! --json PATH`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::arg;
use re6st_testkit::overlay::{ns_of, Overlay, Registry};

/// One round: every node pings every other once, all nodes and pings in
/// parallel; `reach[a][b]` is whether node `a` got an answer from node `b`.
pub(crate) fn reachability(o: &Overlay) -> Vec<Vec<bool>> {
    std::thread::scope(|s| {
        let rounds: Vec<_> = (0..o.nodes)
            .map(|a| {
                s.spawn(move || {
                    let pings: Vec<String> = o
                        .addrs
                        .iter()
                        .enumerate()
                        .filter(|(b, _)| *b as u32 != a)
                        .map(|(b, to)| {
                            format!("(ping -6 -c1 -W1 {to} >/dev/null 2>&1 && echo {b}) &")
                        })
                        .collect();
                    let script = format!("{} wait; true", pings.join(" "));
                    let out = o.lab.sh(&ns_of(a), &script);
                    let mut row = vec![false; o.nodes as usize];
                    row[a as usize] = true;
                    for b in out.lines().filter_map(|l| l.trim().parse::<usize>().ok()) {
                        if let Some(r) = row.get_mut(b) {
                            *r = true;
                        }
                    }
                    row
                })
            })
            .collect();
        rounds
            .into_iter()
            .map(|c| c.join().expect("ping round"))
            .collect()
    })
}

fn all_reachable(o: &Overlay) -> bool {
    reachability(o).iter().all(|row| row.iter().all(|r| *r))
}

/// A `/proc/PID/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Proportional set size (KiB): shared pages divided among the processes
/// that map them.
fn pss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Resident memory (KiB) and CPU time (clock ticks) of a process.
fn usage(pid: u32) -> Option<(u64, u64)> {
    let rss = status_kib(pid, "VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may contain spaces.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks))
}

pub(crate) fn children(pid: u32) -> Vec<(u32, String)> {
    let Ok(out) = std::process::Command::new("ps")
        .args(["-o", "pid=,comm=", "--ppid", &pid.to_string()])
        .output()
    else {
        return vec![];
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next()?.to_owned()))
        })
        .collect()
}

/// babel neighbours of a node (one per open tunnel), from its babeld.
fn neighbours(o: &Overlay, n: u32) -> Option<usize> {
    use std::io::{BufRead, BufReader, Write};
    let path = o.node_dir(n).join("run/babeld-stock.sock");
    let mut s = std::os::unix::net::UnixStream::connect(path).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"dump\n").ok()?;
    let (mut oks, mut count) = (0, 0);
    for line in BufReader::new(s).lines() {
        let line = line.ok()?;
        if line == "ok" {
            oks += 1;
            if oks == 2 {
                return Some(count);
            }
        } else if line.starts_with("add neighbour") {
            count += 1;
        }
    }
    None
}

fn ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn main(args: Vec<String>) {
    let bin = PathBuf::from(arg(&args, "--binary", "target/release/re6st"));
    let nodes: u32 = arg(&args, "--nodes", "8").parse().expect("--nodes");
    let client_count = arg(&args, "--client-count", "2");
    let settle: u64 = arg(&args, "--settle", "30").parse().expect("--settle");
    let json_path = arg(&args, "--json", "");
    let bin = std::fs::canonicalize(&bin).expect("--binary");

    let t0 = Instant::now();
    let o = Overlay::start(
        &bin,
        Registry::Ours,
        nodes,
        None,
        &["--client-count", &client_count],
    );
    let started = t0.elapsed();
    // Nodes are provisioned and started one after the other (a 2048-bit key
    // each): the limit grows with the network.
    let limit = started + Duration::from_secs(300.max(15 * u64::from(nodes)));
    let n = nodes as usize;
    let pairs = n * (n - 1);
    // Per round: when it started (s from t0), pairs that answered.
    let mut samples: Vec<serde_json::Value> = Vec::new();
    // Per node: first round in which it reached every other node.
    let mut reached_all: Vec<Option<f64>> = vec![None; n];
    loop {
        let round = Instant::now();
        let at = t0.elapsed().as_secs_f64();
        let reach = reachability(&o);
        let ok = reach
            .iter()
            .map(|row| row.iter().filter(|r| **r).count() - 1)
            .sum::<usize>();
        for (a, row) in reach.iter().enumerate() {
            if reached_all[a].is_none() && row.iter().all(|r| *r) {
                reached_all[a] = Some(at);
            }
        }
        // The pairs that did not answer, when they are few (what a slow
        // start waits for): `[from, to]`.
        let missing: Vec<[usize; 2]> = if pairs - ok <= 32 {
            (reach.iter().enumerate())
                .flat_map(|(a, row)| {
                    (row.iter().enumerate())
                        .filter(|(_, r)| !**r)
                        .map(move |(b, _)| [a, b])
                })
                .collect()
        } else {
            Vec::new()
        };
        samples.push(serde_json::json!({
            "t": at,
            "after_last_start": at - started.as_secs_f64(),
            "reachable_pairs": ok,
            "fraction": ok as f64 / pairs as f64,
            "missing": missing,
        }));
        if ok == pairs {
            break;
        }
        assert!(
            t0.elapsed() < limit,
            "no full connectivity after {limit:?} ({ok} of {pairs} pairs)\n{}",
            o.logs()
        );
        // At most a round a second: unreachable pings fail at once.
        std::thread::sleep(Duration::from_secs(1).saturating_sub(round.elapsed()));
    }
    let full = t0.elapsed();
    eprintln!(
        "bench: {nodes} nodes fully connected {:.1}s after the start ({:.1}s after the last node started)",
        full.as_secs_f64(),
        (full - started).as_secs_f64()
    );

    // Steady state: CPU over `settle` seconds, memory at the end.
    std::thread::sleep(Duration::from_secs(10));
    let pids = o.node_pids.clone();
    let before: Vec<_> = pids.iter().map(|p| usage(*p)).collect();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(settle));
    let secs = t.elapsed().as_secs_f64();
    let hz = ticks_per_second();
    let mut per_node = Vec::new();
    for (i, pid) in pids.iter().enumerate() {
        let (Some((_, t1)), Some((rss, t2))) = (before[i], usage(*pid)) else {
            panic!("node{i} (pid {pid}) is gone\n{}", o.logs());
        };
        let kids = children(*pid);
        let tunnels = kids.iter().filter(|(_, c)| c == "openvpn").count();
        let child_rss: u64 = kids
            .iter()
            .filter_map(|(p, _)| usage(*p))
            .map(|u| u.0)
            .sum();
        per_node.push(serde_json::json!({
            "node": i,
            "rss_kib": rss,
            // Private memory; the rest is file pages (our binary and the
            // shared libraries), shared with every other process using them.
            "rss_anon_kib": status_kib(*pid, "RssAnon"),
            "rss_file_kib": status_kib(*pid, "RssFile"),
            "pss_kib": pss_kib(*pid),
            "cpu_percent": (t2 - t1) as f64 / hz / secs * 100.0,
            "openvpn_processes": tunnels,
            "tunnels": neighbours(&o, i as u32),
            "children_rss_kib": child_rss,
        }));
    }
    let still = all_reachable(&o);

    o.finish();

    let col = |k: &str| -> Vec<f64> {
        per_node
            .iter()
            .map(|n| n[k].as_f64().unwrap_or(0.0))
            .collect()
    };
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (rss, anon, pss, cpu, tunnels, kids) = (
        col("rss_kib"),
        col("rss_anon_kib"),
        col("pss_kib"),
        col("cpu_percent"),
        col("tunnels"),
        col("children_rss_kib"),
    );
    let mut per_node_after: Vec<f64> = reached_all
        .iter()
        .map(|t| t.unwrap_or(full.as_secs_f64()) - started.as_secs_f64())
        .collect();
    per_node_after.sort_by(f64::total_cmp);
    println!(
        "| {nodes} | {client_count} | {:.1} | {:.1} | {:.1} / {:.1} | {:.1} / {:.0} | {:.0} / {:.0} | {:.0} | {:.0} | {:.2} / {:.2} | {:.0} | {} |",
        full.as_secs_f64(),
        (full - started).as_secs_f64(),
        per_node_after[n / 2],
        per_node_after[n - 1],
        mean(&tunnels),
        max(&tunnels),
        mean(&rss),
        max(&rss),
        mean(&anon),
        mean(&pss),
        mean(&cpu),
        max(&cpu),
        mean(&kids),
        if still { "yes" } else { "no" },
    );
    if !json_path.is_empty() {
        let json = serde_json::json!({
            "nodes": nodes,
            "client_count": client_count,
            "seconds_to_full_connectivity": full.as_secs_f64(),
            "seconds_after_last_start": (full - started).as_secs_f64(),
            "seconds_to_last_start": started.as_secs_f64(),
            // s from the start at which each node first reached every other
            // node (in one ping round).
            "node_reached_all_seconds": reached_all,
            "convergence_limit_seconds": limit.as_secs_f64(),
            // One entry per ping round (at least 1 s apart).
            "convergence": samples,
            "steady_seconds": secs,
            "still_connected": still,
            "per_node": per_node,
        });
        std::fs::write(&json_path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }
}
