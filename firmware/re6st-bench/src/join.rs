//! `re6st-bench join`: where the seconds go when a node joins. Starts a
//! registry and 2 nodes in namespaces (as `re6st-bench path --nodes 2`:
//! node0 on the registry's host, node1 started right after it) and
//! timestamps, relative to node1's start:
//! - the node's own log (`-v 3`, millisecond stamps): set-up done, first
//!   tunnel attempt;
//! - the kernel, with `ip -ts monitor link address route` in node1's
//!   namespace: the tap's carrier (OpenVPN attached), its link-local
//!   address past DAD, the first route babeld installs;
//! - stock babeld's `monitor` on node1's control socket (read only):
//!   the neighbour first seen, its rxcost first finite (hellos heard),
//!   its txcost first finite (its IHU heard), the route to node0;
//! - pingers (a 0.1 s `ping -6 -D` loop) both ways: first answer.
//!
//! Measurement only: the nodes run with their usual options.
//!
//! Options: `--binary PATH --runs N` (default 1). Prints each run's
//! timeline, then (more than one run) median, min and max per step as a
//! Markdown table.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::arg;
use re6st_testkit::netns::Lab;
use re6st_testkit::overlay::{ns_of, Overlay, Registry};

/// Seconds since the epoch.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// "YYYY-MM-DD HH:MM:SS[.mmm]" at the start of a log line (UTC, as the
/// node and OpenVPN write it on this machine), as seconds since the epoch.
fn stamp(line: &str) -> Option<f64> {
    let (date, rest) = line.split_once(' ')?;
    let time = rest.split(' ').next()?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    let days = days_from_civil(d[0], d[1], d[2]);
    Some((days * 86400 + t[0] * 3600 + t[1] * 60 + t[2]) as f64 + frac)
}

/// `ip -ts monitor` prints "[2026-12-06T01:58:20.123456] ...".
fn monitor_stamp(line: &str) -> Option<f64> {
    let inner = line.strip_prefix('[')?.split(']').next()?;
    stamp(&inner.replacen('T', " ", 1))
}

/// Reads stock babeld's `monitor` stream from the first control socket in
/// `run` that greets with "BABEL", stamping each line, until `stop`.
fn babel_monitor(run: PathBuf, out: Arc<Mutex<Vec<(f64, String)>>>, stop: Arc<Mutex<bool>>) {
    while !*stop.lock().unwrap() {
        let socks: Vec<PathBuf> = std::fs::read_dir(&run)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                    .collect()
            })
            .unwrap_or_default();
        for sock in socks {
            let Ok(mut s) = UnixStream::connect(&sock) else {
                continue;
            };
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            if r.read_line(&mut first).is_err() || !first.starts_with("BABEL") {
                continue;
            }
            let _ = s.write_all(b"monitor\n");
            let mut line = String::new();
            while !*stop.lock().unwrap() {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) => return,
                    Ok(_) => out.lock().unwrap().push((now(), line.trim().to_owned())),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Time of the first of `lines` (from `after`, less a second of margin)
/// matching `pred`.
fn first(lines: &[(f64, String)], after: f64, pred: impl Fn(&str) -> bool) -> Option<f64> {
    lines
        .iter()
        .find(|(t, l)| *t >= after - 1.0 && pred(l))
        .map(|(t, _)| *t)
}

fn stamped(path: &Path, parse: fn(&str) -> Option<f64>) -> Vec<(f64, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| parse(l).map(|t| (t, l.to_owned())))
        .collect()
}

/// The pinger: a `ping -6 -D` every 0.1 s (restarted while the address is
/// unreachable, when ping exits at once), until the first answer.
fn pinger(lab: &mut Lab, ns: &str, to: &str, log: &Path) {
    let script =
        format!("until ping -6 -D -n -i 0.1 -w 1 {to} | grep -m1 'bytes from'; do sleep 0.1; done");
    lab.spawn(ns, &["bash", "-c", &script], log);
}

fn ping_answered(log: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    let l = text.lines().find(|l| l.contains("bytes from"))?;
    l.strip_prefix('[')?.split(']').next()?.parse().ok()
}

const STEPS: &[&str] = &[
    "node set-up done (taps, addresses)",
    "first tunnel attempt (OpenVPN started)",
    "tap carrier (OpenVPN connected, TLS done, tap attached)",
    "tap link-local address usable (DAD done)",
    "babeld: neighbour node0 first heard",
    "babeld: rxcost finite (node0's hellos heard)",
    "babeld: txcost finite (node0's IHU heard)",
    "babeld: route to node0 selected, finite metric",
    "kernel: first babel route to node0 (node1; may be metric 65535)",
    "node0's babeld: node1's cost finite",
    "node0's babeld: route to node1 selected, finite metric",
    "kernel: first babel route to node1 (node0)",
    "first ping answered node1 -> node0",
    "first ping answered node0 -> node1",
];

fn one_run(bin: &Path, run: u32, node_args: &[String]) -> Vec<Option<f64>> {
    let tag = format!("re6st-join-{}-{run}", std::process::id());
    let mon = std::env::temp_dir().join(tag);
    let _ = std::fs::remove_dir_all(&mon);
    std::fs::create_dir_all(&mon).unwrap();
    let start: Mutex<Option<f64>> = Mutex::new(None);
    let mon_setup = mon.clone();
    let mut o = Overlay::start_with(
        bin,
        Registry::Ours,
        2,
        None,
        &[],
        &move |lab: &mut Lab| {
            for n in 0..2 {
                let log = mon_setup.join(format!("monitor-{n}.out"));
                lab.spawn(
                    &ns_of(n),
                    &["ip", "-ts", "monitor", "link", "address", "route"],
                    &log,
                );
            }
        },
        &|n| {
            if n == 1 {
                *start.lock().unwrap() = Some(now());
            }
            node_args.to_vec()
        },
    );
    let t0 = start.lock().unwrap().expect("node1 started");
    let stop = Arc::new(Mutex::new(false));
    let babel = Arc::new(Mutex::new(Vec::new()));
    let babel0 = Arc::new(Mutex::new(Vec::new()));
    let monitors = [(1, babel.clone()), (0, babel0.clone())].map(|(n, out)| {
        let (run, stop) = (o.node_dir(n).join("run"), stop.clone());
        std::thread::spawn(move || babel_monitor(run, out, stop))
    });
    let (a0, a1) = (o.addrs[0].clone(), o.addrs[1].clone());
    let (p10, p01) = (mon.join("ping-1-0.out"), mon.join("ping-0-1.out"));
    pinger(&mut o.lab, &ns_of(1), &a0, &p10);
    pinger(&mut o.lab, &ns_of(0), &a1, &p01);
    let done = Lab::wait_until(Duration::from_secs(120), || {
        ping_answered(&p10).is_some() && ping_answered(&p01).is_some()
    });
    if !done {
        eprintln!(
            "join: run {run}: no answer both ways within 120 s\n{}",
            o.logs()
        );
    }
    *stop.lock().unwrap() = true;
    for m in monitors {
        let _ = m.join();
    }

    let node = stamped(&o.node_dir(1).join("node-1.out"), stamp);
    let kernel1 = stamped(&mon.join("monitor-1.out"), monitor_stamp);
    let kernel0 = stamped(&mon.join("monitor-0.out"), monitor_stamp);
    let babel = babel.lock().unwrap().clone();
    let babel0 = babel0.lock().unwrap().clone();
    // "change route ... prefix P from ::/0 installed yes ... metric 96".
    let route_selected = |l: &str, net: &str| {
        (l.starts_with("add route") || l.starts_with("change route"))
            && l.contains(&format!("prefix {net} "))
            && l.contains("installed yes")
            && l.split_whitespace()
                .skip_while(|w| *w != "metric")
                .nth(1)
                .is_some_and(|m| m != "65535")
    };
    let is_tap = |l: &str| l.contains("re6stnet") && !l.contains("re6stnet-tcp");
    // node0's subnet, as babeld and the kernel write it.
    // (a /48 network with 16-bit node prefixes: /64 subnets).
    let net0 = format!("{}/64", a0.trim_end_matches('1'));
    let net1 = format!("{}/64", a1.trim_end_matches('1'));
    // "... rxcost 96 txcost 65535 cost 65535": `field` is finite.
    let finite = |l: &str, field: &str| {
        (l.starts_with("add neighbour") || l.starts_with("change neighbour"))
            && l.split_whitespace()
                .skip_while(|w| *w != field)
                .nth(1)
                .is_some_and(|c| c != "65535")
    };
    let times = [
        first(&node, t0, |l| {
            l.contains("re6stnet: node ") && l.contains(" up,")
        }),
        first(&node, t0, |l| {
            l.contains("re6stnet: tunnel to") && l.contains("trying")
        }),
        first(&kernel1, t0, |l| {
            is_tap(l)
                && l.contains("LOWER_UP")
                && !l.contains("NO-CARRIER")
                && !l.contains("Deleted")
        }),
        first(&kernel1, t0, |l| {
            is_tap(l) && l.contains("fe80") && !l.contains("tentative") && !l.contains("Deleted")
        }),
        first(&babel, t0, |l| l.starts_with("add neighbour")),
        first(&babel, t0, |l| finite(l, "rxcost")),
        first(&babel, t0, |l| finite(l, "txcost")),
        first(&babel, t0, |l| route_selected(l, &net0)),
        first(&kernel1, t0, |l| {
            l.contains(&net0) && l.contains("proto babel") && !l.contains("Deleted")
        }),
        first(&babel0, t0, |l| finite(l, "cost")),
        first(&babel0, t0, |l| route_selected(l, &net1)),
        first(&kernel0, t0, |l| {
            l.contains(&net1) && l.contains("proto babel") && !l.contains("Deleted")
        }),
        ping_answered(&p10),
        ping_answered(&p01),
    ];
    let rel: Vec<Option<f64>> = times.iter().map(|t| t.map(|t| t - t0)).collect();
    eprintln!(
        "join: run {run} (node1 started at {t0:.3}, files in {})",
        mon.display()
    );
    for (step, t) in STEPS.iter().zip(&rel) {
        match t {
            Some(t) => eprintln!("  {t:7.3} s  {step}"),
            None => eprintln!("        -    {step}"),
        }
    }
    if std::env::var_os("RE6ST_KEEP_DIRS").is_some() {
        let dump: String = babel
            .iter()
            .map(|(t, l)| format!("{:.3} {l}\n", t - t0))
            .collect();
        let _ = std::fs::write(mon.join("babel-monitor-1.out"), dump);
        let dump: String = babel0
            .iter()
            .map(|(t, l)| format!("{:.3} {l}\n", t - t0))
            .collect();
        let _ = std::fs::write(mon.join("babel-monitor-0.out"), dump);
    } else {
        let _ = std::fs::remove_dir_all(&mon);
    }
    o.finish();
    rel
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn main(args: Vec<String>) {
    let bin = PathBuf::from(arg(&args, "--binary", "target/release/re6st"));
    let runs: u32 = arg(&args, "--runs", "1").parse().expect("--runs");
    let bin = std::fs::canonicalize(&bin).expect("--binary");
    // Extra arguments for both nodes (repeatable `--node-arg`), to try a
    // setting without rebuilding, e.g. `--node-arg -B --node-arg -C
    // --node-arg -B --node-arg 'default update-interval 4'`.
    let node_args: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--node-arg")
        .map(|w| w[1].clone())
        .collect();
    let mut all: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for run in 0..runs {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        eprintln!("join: run {run}, load average {}", load.trim());
        for (i, t) in one_run(&bin, run, &node_args).into_iter().enumerate() {
            if let Some(t) = t {
                all.entry(i).or_default().push(t);
            }
        }
    }
    let json_out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1));
    if let Some(path) = json_out {
        let steps: Vec<serde_json::Value> = STEPS
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let mut v = all.get(&i).cloned().unwrap_or_default();
                serde_json::json!({
                    "step": step,
                    "median": (!v.is_empty()).then(|| median(&mut v)),
                    "seconds": v,
                })
            })
            .collect();
        let out = serde_json::json!({"runs": runs, "steps": steps});
        std::fs::write(path, serde_json::to_string_pretty(&out).unwrap()).expect("--json");
    }
    println!("| step (node1, s after its start) | median | min | max | runs |");
    println!("|---|---|---|---|---|");
    for (i, step) in STEPS.iter().enumerate() {
        match all.get_mut(&i) {
            Some(v) if !v.is_empty() => {
                let (lo, hi) = (
                    v.iter().copied().fold(f64::INFINITY, f64::min),
                    v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                );
                let n = v.len();
                println!("| {step} | {:.2} | {lo:.2} | {hi:.2} | {n} |", median(v));
            }
            _ => println!("| {step} | - | - | - | 0 |"),
        }
    }
}
