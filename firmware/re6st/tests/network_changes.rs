//! The network changing under running nodes: a new configuration at the
//! registry spreads to every node and is applied; a revoked node is cut
//! off by everyone; a third of the nodes die at once and the others find
//! each other again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::process::Command;
use std::time::Duration;

use re6st_testkit::netns::Lab;
use re6st_testkit::overlay::{ns_of, Overlay, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

/// These networks are big for 2 cores: one at a time, so that what they
/// measure (loss, reconnection) is the network's and not CPU starvation's.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Subnets node `n` has a tunnel with, either way (not counting its own
/// attempts still connecting: a revoked peer refuses those); `None` when
/// the node does not answer `ctl status`, which tells nothing of its
/// tunnels.
fn tunnel_peers(o: &Overlay, n: u32) -> Option<BTreeSet<String>> {
    let s = o.status(n)?;
    let mut peers: BTreeSet<String> = s["tunnels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] != "connecting")
        .filter_map(|t| t["peer"].as_str().map(str::to_owned))
        .collect();
    peers.extend(
        s["served"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_owned)),
    );
    Some(peers)
}

/// Each of `nodes`' tunnel peers, or that it did not answer.
fn tunnel_peers_of(o: &Overlay, nodes: std::ops::Range<u32>) -> Vec<String> {
    nodes
        .map(|n| match tunnel_peers(o, n) {
            Some(p) => format!("node{n}: {p:?}"),
            None => format!("node{n}: no answer to ctl status"),
        })
        .collect()
}

/// The command line of node `n`'s babeld.
fn babeld_cmdline(o: &Overlay, n: u32) -> Option<String> {
    let marker = o.node_dir(n).join("run").display().to_string();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.starts_with("babeld ") && line.contains(&marker) {
            return Some(line);
        }
    }
    None
}

/// The clients on node `n`'s OpenVPN servers, read from their management
/// sockets: (socket, common name, client ID).
fn server_clients(o: &Overlay, n: u32) -> BTreeSet<(String, String, u64)> {
    use re6st_node::openvpn::management::{Reply, Session};
    use std::io::{BufRead, BufReader, Write};
    let mut out = BTreeSet::new();
    let run = o.node_dir(n).join("run");
    for e in std::fs::read_dir(&run).into_iter().flatten().flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "mgmt") {
            continue;
        }
        // OpenVPN serves one management client at a time: the daemon's
        // may hold it for a moment.
        let mut stream = None;
        Lab::wait_until(Duration::from_secs(10), || {
            stream = std::os::unix::net::UnixStream::connect(&path).ok();
            stream.is_some()
        });
        let Some(mut stream) = stream else {
            panic!("{} does not answer", path.display())
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut session = Session::default();
        if stream
            .write_all(session.request_status().as_bytes())
            .is_err()
        {
            continue;
        }
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            match session.feed(&line) {
                Some(Reply::Status(rows)) => {
                    for c in rows {
                        let name = path.file_name().unwrap().to_string_lossy().to_string();
                        out.insert((format!("node{n}/{name}"), c.common_name, c.cid.unwrap_or(0)));
                    }
                    break;
                }
                Some(_) => break,
                None => {}
            }
        }
    }
    out
}

/// Every node of `alive` pings every other one.
fn all_reach(o: &Overlay, alive: &[u32], limit: Duration) {
    for &a in alive {
        for &b in alive {
            if a == b {
                continue;
            }
            let to = &o.addrs[b as usize];
            assert!(
                Lab::wait_until(limit, || o
                    .lab
                    .try_sh(&ns_of(a), &format!("ping -6 -c1 -W1 {to}"))),
                "node{a} cannot reach node{b} ({to})\n{}",
                o.logs()
            );
        }
    }
}

#[test]
fn configuration_changes_and_revocations_spread() {
    let _one = exclusive();
    let mut o = Overlay::start(
        BIN.as_ref(),
        Registry::Ours,
        5,
        None,
        &["--authorized-origin", "198.18.1.2"],
    );
    o.all_pairs_reach(Duration::from_secs(120));
    // ctl status has each served client's byte counts, from the servers'
    // management sockets.
    let traffic: Vec<serde_json::Value> = (0..5)
        .filter_map(|n| o.status(n))
        .flat_map(|s| s["served_traffic"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        traffic
            .iter()
            .any(|t| t["bytes_received"].as_u64() > Some(0) && t["bytes_sent"].as_u64() > Some(0)),
        "no served client with byte counts: {traffic:?}"
    );
    let v0 = o.status(1).unwrap()["config_version"].as_u64().unwrap();
    for n in 0..5 {
        let b = babeld_cmdline(&o, n).expect("babeld");
        assert!(b.contains(" -h 4 "), "{b}");
    }

    // A new hello interval at the registry: a new version, announced to
    // its node, spread node to node; each restarts babeld with it.
    // And no tunnel refresh for the rest of the test: a client that loses
    // its tunnel below is the revocations' doing, not a rewiring.
    o.restart_registry(&[("--hello", "6"), ("--tunnel-refresh", "3600")]);
    for n in 0..5 {
        assert!(
            Lab::wait_until(Duration::from_secs(60), || {
                o.status(n)
                    .is_some_and(|s| s["config_version"].as_u64() > Some(v0))
                    && babeld_cmdline(&o, n).is_some_and(|b| b.contains(" -h 6 "))
            }),
            "node{n} did not apply the new configuration: {:?}\n{:?}\n{}",
            o.status(n),
            babeld_cmdline(&o, n),
            o.logs()
        );
    }
    o.all_pairs_reach(Duration::from_secs(60));

    // Revoke node 3's certificate by serial (a compromised certificate,
    // not an expelled node): it gets a new one and stays in the network.
    let serial = |o: &Overlay| -> u128 {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(o.node_dir(3).join("cert.crt"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        u128::from_str_radix(text.trim().trim_start_matches("serial="), 16).unwrap_or(0)
    };
    let old = serial(&o);
    let revoked_at = std::time::Instant::now();
    o.lab.sh(
        "reg",
        &format!(
            "python3 -c \"import urllib.request; urllib.request.urlopen('http://198.18.1.2:9080/revoke?cn_or_serial={old}').read()\""
        ),
    );
    // The node learns of it from its peers (they announce it before they
    // drop it; else it checks the configuration once alone for 15 s) and
    // renews: 1.9 to 2.3 s in 3 runs.
    assert!(
        Lab::wait_until(Duration::from_secs(45), || serial(&o) != old),
        "node3 kept its revoked certificate {old}\n{}",
        o.logs()
    );
    let renewed_at = std::time::Instant::now();
    // Back in the overlay. Its peers had dropped its tunnels, and a tap
    // freed by one went at once to a tunnel to another peer, while the
    // kernel still routed through the old one there: stock babeld takes
    // the kernel's "exists" for success, and the daemon's comparison of
    // both views repaired it only two comparisons (10 s apart) later. 3.2
    // to 38.1 s in 7 runs (median 21.9) then; with babeld's routes through
    // a closed tunnel's tap deleted and a peer given back its last tap,
    // 6.7 to 25.6 s in 10 runs (median 15.2; the machine busy with a make
    // test beside). The slow pair is still node0 -> node3: in a 24.4 s
    // run, node0's server tap still routed through the dropped node3 and
    // babeld's new route there met the same "exists", repaired 11 s later
    // (a server's tap never closes, so nothing deletes those routes).
    // With comparisons every 2 s for 20 s after a tunnel or neighbour
    // goes (repairs 2 to 5 s after the change) and the renewed node's
    // tunnels reopened to the same peers on the same taps: 5.1 to 26.8 s
    // in 8 runs (median 18.3; a simulation running beside). What is left
    // is babel's: the renewed node's servers restart with the new
    // certificate, and their clients come back as new neighbours.
    o.all_pairs_reach(Duration::from_secs(60));
    eprintln!(
        "renewal: new certificate {:.1} s after the revocation, every pair reachable {:.1} s after it",
        (renewed_at - revoked_at).as_secs_f64(),
        renewed_at.elapsed().as_secs_f64()
    );

    // Revoke by name a node that is a client of a server with another
    // client: nobody keeps or accepts a tunnel with it, and that other
    // client keeps its tunnel (the server drops exactly the revoked one).
    let mut chosen = None;
    assert!(
        Lab::wait_until(Duration::from_secs(60), || {
            let all: Vec<BTreeSet<(String, String, u64)>> =
                (0..5).map(|n| server_clients(&o, n)).collect();
            chosen = (1..5).find_map(|v| {
                let cn = o.cn(v);
                let shared = all.iter().enumerate().any(|(n, rows)| {
                    n != v as usize
                        && rows.iter().any(|r| r.1 == cn)
                        && rows.iter().any(|r| r.1 != cn)
                });
                shared.then_some((v, all.clone()))
            });
            chosen.is_some()
        }),
        "no node shares a server with another client: {:#?}",
        tunnel_peers_of(&o, 0..5)
    );
    let (victim, before) = chosen.unwrap();
    let cn = o.cn(victim);
    let others: Vec<u32> = (0..5).filter(|n| *n != victim).collect();
    // Every tunnel on the others' servers that does not involve the victim.
    // A client still in its TLS handshake has no tunnel yet and no name
    // (OpenVPN lists it as `UNDEF`): it may be the victim's, and an
    // innocent one is listed under its name once through (a CI run
    // counted one such row, named a moment later, as lost).
    let innocent: BTreeSet<(String, String, u64)> = others
        .iter()
        .flat_map(|n| before[*n as usize].iter().cloned())
        .filter(|r| r.1 != cn && r.1 != "UNDEF")
        .collect();
    let subnet = format!("{}/64", o.addrs[victim as usize].strip_suffix('1').unwrap());
    let version = |o: &Overlay, n: u32| o.status(n).and_then(|s| s["config_version"].as_u64());
    let v0 = version(&o, others[0]).unwrap_or(0);
    let revoked_at = std::time::Instant::now();
    o.lab.sh(
        "reg",
        &format!(
            "python3 -c \"import urllib.request; urllib.request.urlopen('http://198.18.1.2:9080/revoke?cn_or_serial={cn}').read()\""
        ),
    );
    // Cut off: every other node answers, and none has a tunnel with it (a
    // node that does not answer is no evidence).
    let cut_off = |o: &Overlay| {
        others
            .iter()
            .all(|n| tunnel_peers(o, *n).is_some_and(|p| !p.contains(&subnet)))
    };
    let mut configured: BTreeMap<u32, f64> = BTreeMap::new();
    let mut cut_at = None;
    // 1.6 to 2.3 s in 3 runs (the version spreads at once; it is
    // re-announced every 30 s should an announcement be lost).
    Lab::wait_until(Duration::from_secs(45), || {
        for n in &others {
            if !configured.contains_key(n) && version(&o, *n) > Some(v0) {
                configured.insert(*n, revoked_at.elapsed().as_secs_f64());
            }
        }
        if cut_at.is_none() && cut_off(&o) {
            cut_at = Some(revoked_at.elapsed().as_secs_f64());
        }
        cut_at.is_some() && configured.len() == others.len()
    });
    let cut_at = cut_at.unwrap_or_else(|| {
        panic!(
            "{subnet} still has tunnels, or a node does not answer: {:#?}\n{}",
            tunnel_peers_of(&o, 0..5),
            o.logs()
        )
    });
    eprintln!(
        "revocation of node{victim}: new configuration at its peers after {configured:?} s, all its tunnels closed after {cut_at:.1} s"
    );
    // Not one other tunnel of those servers was cut.
    let after: BTreeSet<(String, String, u64)> =
        others.iter().flat_map(|n| server_clients(&o, *n)).collect();
    let lost: Vec<_> = innocent.difference(&after).collect();
    assert!(
        lost.is_empty(),
        "innocent clients lost their tunnels: {lost:?}\nbefore {innocent:?}\nafter {after:?}"
    );
    // ... and stays so while it keeps trying.
    std::thread::sleep(Duration::from_secs(15));
    assert!(
        cut_off(&o),
        "{subnet} got a tunnel back, or a node does not answer: {:#?}",
        tunnel_peers_of(&o, 0..5)
    );
    // A node whose tunnels all went through the victim rejoins by bootstrap.
    // 180 s as before the management-interface revocation: the fresh-clone
    // CI run on b3f779e failed the branch's 60 s (node0 could not reach
    // node2), cause not found.
    all_reach(&o, &others, Duration::from_secs(180));
    o.finish();
}

#[test]
fn a_third_of_the_nodes_die_and_the_others_reconnect() {
    let _one = exclusive();
    let mut o = Overlay::start(BIN.as_ref(), Registry::Ours, 9, None, &[]);
    o.all_pairs_reach(Duration::from_secs(150));
    // Three routers lose power at once (their namespaces, with everything
    // in them, are gone); the registry's node survives.
    let dead = [2, 5, 8];
    for n in dead {
        o.lab.remove_ns(&ns_of(n));
    }
    let alive: Vec<u32> = (0..9).filter(|n| !dead.contains(n)).collect();
    all_reach(&o, &alive, Duration::from_secs(120));
    o.finish();
}

/// Gaps in the answers of a `ping -D` log, as (last answer, next answer)
/// in seconds of the day.
fn outages(ping: &str) -> Vec<(f64, f64)> {
    let answers: Vec<(u64, f64)> = ping
        .lines()
        .filter_map(|l| {
            let stamp: f64 = l.strip_prefix('[')?.split(']').next()?.parse().ok()?;
            let seq = l
                .split("icmp_seq=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            Some((seq, stamp % 86_400.0))
        })
        .collect();
    answers
        .windows(2)
        .filter(|w| w[1].0 != w[0].0 + 1)
        .map(|w| (w[0].1, w[1].1))
        .collect()
}

/// `HH:MM:SS.fff` as seconds of the day (the time stamps of the node logs
/// and of `ip -ts monitor`).
fn seconds_of_day(hms: &str) -> Option<f64> {
    let t: Vec<f64> = hms.split(':').filter_map(|x| x.parse().ok()).collect();
    (t.len() == 3).then(|| t[0] * 3600.0 + t[1] * 60.0 + t[2])
}

/// The tunnel decisions every node logged in a window (seconds of the day).
fn decisions_between(o: &Overlay, from: f64, to: f64) -> String {
    let mut out = String::new();
    for n in 0..12 {
        let log = o.dir.join(format!("node{n}/node-{n}.out"));
        for l in std::fs::read_to_string(log).unwrap_or_default().lines() {
            let Some((_, rest)) = l.split_once(' ') else {
                continue;
            };
            let t = seconds_of_day(rest.split(' ').next().unwrap_or(""));
            if l.contains(" re6stnet: ") && t.is_some_and(|t| (from..=to).contains(&t)) {
                out += &format!("    node {n}: {l}\n");
            }
        }
    }
    out
}

/// The kernel route changes (`ip -ts monitor route`, see the rewiring
/// test) of every node in a window (seconds of the day) to routes that
/// cover one of `addrs`.
fn route_changes_between(o: &Overlay, addrs: &[&str], from: f64, to: f64) -> String {
    let addrs: Vec<Ipv6Addr> = addrs.iter().filter_map(|a| a.parse().ok()).collect();
    let covers = |route: &str| -> bool {
        let Some((net, len)) = route.split_once('/') else {
            return false;
        };
        let (Ok(net), Ok(len)) = (net.parse::<Ipv6Addr>(), len.parse::<u32>()) else {
            return false;
        };
        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        addrs
            .iter()
            .any(|a| u128::from(*a) & mask == u128::from(net) & mask)
    };
    let mut out = String::new();
    for n in 0..12 {
        let log = o.dir.join(format!("routes-{n}.log"));
        for l in std::fs::read_to_string(log).unwrap_or_default().lines() {
            // [2026-12-06T11:56:50.213198] [Deleted ]2001:db8::/64 ...
            let Some((stamp, rest)) = l.strip_prefix('[').and_then(|l| l.split_once("] ")) else {
                continue;
            };
            let t = seconds_of_day(stamp.split('T').nth(1).unwrap_or(""));
            let route = rest.strip_prefix("Deleted ").unwrap_or(rest);
            let route = route.strip_prefix("unreachable ").unwrap_or(route);
            if t.is_some_and(|t| (from..=to).contains(&t))
                && covers(route.split(' ').next().unwrap_or(""))
            {
                out += &format!("    node {n} route: {l}\n");
            }
        }
    }
    out
}

#[test]
fn tunnels_are_rewired_without_losing_traffic() {
    let _one = exclusive();
    // 12 nodes; every 20 s each drops its least useful client tunnel
    // (draining it through babel first) and opens another. (A drain needs
    // the peer to hear our raised cost: babeld sends it every 3 hellos,
    // 12 s here, so a shorter refresh would abort most drains.)
    let mut o = Overlay::start(
        BIN.as_ref(),
        Registry::Ours,
        12,
        None,
        &["--tunnel-refresh", "20", "--client-count", "3"],
    );
    o.all_pairs_reach(Duration::from_secs(180));
    let graph = |o: &Overlay| -> BTreeSet<(u32, String)> {
        (0..12)
            .flat_map(|n| {
                o.status(n)
                    .map(|s| {
                        s["tunnels"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|t| t["state"] == "established")
                            .filter_map(|t| t["peer"].as_str().map(|p| (n, p.to_owned())))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect()
    };
    let before = graph(&o);
    // Every node's kernel route changes, to show where an outage's
    // packets went (the ping's two ends and the hops between them).
    for n in 0..12 {
        let log = o.dir.join(format!("routes-{n}.log"));
        o.lab
            .spawn(&ns_of(n), &["ip", "-6", "-ts", "monitor", "route"], &log);
    }
    // Continuous pings (5 per second for 90 s) between a few pairs.
    let pairs = [(1u32, 7u32), (3, 10), (5, 11), (9, 2)];
    let logs: Vec<_> = pairs
        .iter()
        .map(|(a, b)| {
            let log = o.dir.join(format!("ping-{a}-{b}.out"));
            let cmd = format!(
                "ping -6 -D -i 0.2 -c 450 -W 1 {} > {} 2>&1",
                o.addrs[*b as usize],
                log.display()
            );
            let ns = o.lab.ns(&ns_of(*a));
            (
                Command::new("ip")
                    .args(["netns", "exec", &ns, "sh", "-c", &cmd])
                    .spawn()
                    .unwrap(),
                log,
            )
        })
        .collect();
    let mut seen = vec![before.clone()];
    // The status command shows tunnels being drained along the way.
    let mut states: BTreeSet<String> = BTreeSet::new();
    for i in 0..30 {
        std::thread::sleep(Duration::from_secs(3));
        for n in 0..12 {
            for t in o
                .status(n)
                .and_then(|s| s["tunnels"].as_array().cloned())
                .unwrap_or_default()
            {
                states.extend(t["state"].as_str().map(str::to_owned));
            }
        }
        if i % 5 == 4 {
            seen.push(graph(&o));
        }
    }
    let mut lost_total = 0;
    for ((mut child, log), (a, b)) in logs.into_iter().zip(pairs) {
        let _ = child.wait();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let stats = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| panic!("{text}"))
            .to_owned();
        let nums: Vec<u64> = stats
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        let (sent, received) = (nums[0], nums[1]);
        assert_eq!(sent, 450, "{stats}");
        lost_total += sent - received;
        eprintln!("{}: {stats}", log.display());
        for (from, to) in outages(&text) {
            eprintln!("  no answer between {from:.1} and {to:.1} (seconds of the day, UTC)");
            eprint!("{}", decisions_between(&o, from - 15.0, to + 1.0));
            eprint!(
                "{}",
                route_changes_between(
                    &o,
                    &[&o.addrs[a as usize], &o.addrs[b as usize]],
                    from - 5.0,
                    to + 1.0
                )
            );
        }
    }
    // Less than 1% of 1800 packets.
    assert!(lost_total < 18, "{lost_total} of 1800 pings lost");
    assert!(
        states.contains("draining"),
        "no tunnel seen draining: {states:?}"
    );
    let changes = seen.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        changes >= 2 && seen.last() != Some(&before),
        "the tunnel graph did not keep changing: {seen:?}"
    );
    o.finish();
}
