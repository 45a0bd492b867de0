//! Slow work never stalls the node's event loop (issue 15): a babeld that
//! keeps crashing (its restart back-off grows to 16 s) and a registry that
//! accepts connections and never answers (every call waits for its 20 s
//! time-out) leave `re6st ctl status` answered within a second, OpenVPN's
//! hooks answered (a peer that connects meanwhile gets its tunnel) and the
//! network reachable.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use re6st_node::babel::control::{parse_line, Line};
use re6st_testkit::netns::{alive, Lab};
use re6st_testkit::overlay::{ns_of, Overlay, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

/// The longest a `re6st ctl status` may take (the issue's limit).
const STATUS_LIMIT: Duration = Duration::from_secs(1);

/// Asks a node for its status every 200 ms from a thread, timing each
/// answer, until stopped.
struct StatusWatch {
    stop: Arc<AtomicBool>,
    /// (when, how long it took, whether it answered), in order.
    answers: Arc<Mutex<Vec<(Duration, Duration, bool)>>>,
    thread: Option<JoinHandle<()>>,
}

impl StatusWatch {
    fn start(run_dir: PathBuf) -> StatusWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), answers.clone());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = Command::new(BIN)
                    .args(["ctl", "status", "--json", "-r"])
                    .arg(&run_dir)
                    .output()
                    .is_ok_and(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).is_ok());
                a.lock().unwrap().push((t - start, t.elapsed(), ok));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        StatusWatch {
            stop,
            answers,
            thread: Some(thread),
        }
    }

    /// Stops the thread; every (when, took, answered).
    fn finish(mut self) -> Vec<(Duration, Duration, bool)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.answers.lock().unwrap())
    }
}

impl Drop for StatusWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every answer came, each within [`STATUS_LIMIT`].
fn assert_status_kept_answering(answers: &[(Duration, Duration, bool)], o: &Overlay) {
    assert!(answers.len() >= 10, "too few status requests: {answers:?}");
    let slow: Vec<_> = answers
        .iter()
        .filter(|(_, took, ok)| !ok || *took > STATUS_LIMIT)
        .collect();
    let worst = answers.iter().map(|a| a.1).max().unwrap_or_default();
    eprintln!(
        "stalls: {} status requests, slowest {:.3} s",
        answers.len(),
        worst.as_secs_f64()
    );
    assert!(
        slow.is_empty(),
        "re6st ctl status slower than {STATUS_LIMIT:?} or unanswered (at, took, answered): \
         {slow:?}\n{}",
        o.logs()
    );
}

fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Whether node `n`'s status lists `peer` (a subnet) among the peers of
/// its servers or as an established client tunnel.
fn has_tunnel_with(o: &Overlay, n: u32, peer: &str) -> bool {
    let Some(s) = o.status(n) else {
        return false;
    };
    let served = s["served"]
        .as_array()
        .is_some_and(|a| a.iter().any(|p| p == peer));
    let client = s["tunnels"].as_array().is_some_and(|a| {
        a.iter()
            .any(|t| t["peer"] == peer && t["state"] == "established")
    });
    served || client
}

/// Whether node `n`'s babeld has installed its route to `prefix` through
/// the node that announces it (refmetric 0: the next hop is the
/// originator), read from stock babeld's local socket.
fn routes_directly(o: &Overlay, n: u32, prefix: &str) -> bool {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let Ok(mut sock) = UnixStream::connect(o.node_dir(n).join("run/babeld-stock.sock")) else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
    if sock.write_all(b"dump\n").is_err() {
        return false;
    }
    // The greeting ends with "ok", then the dump with a second one.
    let mut oks = 0;
    for line in BufReader::new(sock).lines() {
        let Ok(line) = line else { return false };
        match parse_line(&line) {
            Ok(Line::Ok) => {
                oks += 1;
                if oks == 2 {
                    return false;
                }
            }
            Ok(Line::Route { route: Some(r), .. })
                if r.installed
                    && r.refmetric == 0
                    && format!("{}/{}", r.prefix.0, r.prefix.1) == prefix =>
            {
                return true
            }
            _ => {}
        }
    }
    false
}

/// Node `n`'s subnet as its status says it.
fn subnet_of(o: &Overlay, n: u32) -> String {
    let s = o.try_status(n).unwrap_or_else(|e| panic!("{e}"));
    s["subnet"].as_str().expect("subnet").to_owned()
}

/// The overlay is dropped (namespaces, processes) and its directory
/// removed even when the test fails.
struct Net(Option<Overlay>);

impl Net {
    fn o(&self) -> &Overlay {
        self.0.as_ref().unwrap()
    }
    fn o_mut(&mut self) -> &mut Overlay {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(o) = self.0.take() {
            o.finish();
        }
    }
}

/// babeld killed 5 times in a row on node1 (its restart back-off grows
/// 1, 2, 4, 8, 16 s) while node2 connects: `re6st ctl status` answers
/// within a second throughout, node2's tunnel to node1 is accepted (the
/// client-connect hook was answered) and every pair reaches afterwards.
#[test]
fn babeld_crashing_in_a_loop_stalls_nothing() {
    let mut net = Net(Some(Overlay::start(
        BIN.as_ref(),
        Registry::Ours,
        3,
        None,
        &[],
    )));
    net.o().all_pairs_reach(Duration::from_secs(120));
    let node2 = subnet_of(net.o(), 2);
    let pid2 = net.o().node_pids[2];
    net.o().stop_node(pid2, "-TERM", Duration::from_secs(30));
    assert!(
        Lab::wait_until(Duration::from_secs(30), || !has_tunnel_with(
            net.o(),
            1,
            &node2
        )),
        "node1 still has a tunnel with the stopped node2"
    );

    let watch = StatusWatch::start(net.o().node_dir(1).join("run"));
    let pidfile = net.o().node_dir(1).join("run/babeld.pid");
    let mut accepted = false;
    for round in 0..5 {
        let babeld = read_pid(&pidfile).expect("babeld.pid");
        assert!(alive(babeld), "round {round}: babeld {babeld} not running");
        signal("-KILL", babeld);
        if round == 0 {
            net.o_mut().start_node(2);
        }
        // The back-off of this round is 2^round seconds.
        let restarted = Lab::wait_until(Duration::from_secs(40), || {
            accepted |= has_tunnel_with(net.o(), 1, &node2);
            read_pid(&pidfile).is_some_and(|p| p != babeld && alive(p))
        });
        assert!(
            restarted,
            "round {round}: babeld not restarted\n{}",
            net.o().logs()
        );
    }
    accepted |= Lab::wait_until(Duration::from_secs(30), || {
        has_tunnel_with(net.o(), 1, &node2)
    });
    let answers = watch.finish();
    assert_status_kept_answering(&answers, net.o());
    assert!(
        accepted,
        "node2 has no tunnel with node1\n{}",
        net.o().logs()
    );
    let log = net.o().node_output(1);
    assert!(log.contains("restarting in 16s"), "{log}");
    net.o().all_pairs_reach(Duration::from_secs(120));
}

/// Sends node `n`'s daemon a client-connect event the way OpenVPN's hook
/// does (`re6st ovpn-hook`, which waits up to 10 s for the verdict) for
/// the made-up peer `cn`, then its client-disconnect: how long the
/// verdict took, and whether the peer was accepted.
fn hook_round_trip(o: &Overlay, n: u32, cn: &str) -> (Duration, bool) {
    let sock = o.node_dir(n).join("run/ovpn.sock");
    let hook = |script: &str| {
        Command::new(BIN)
            .arg("ovpn-hook")
            .arg(&sock)
            .env("script_type", script)
            .env("common_name", cn)
            .env("dev", "re6stnet-tcp")
            .env("tls_serial_0", "424242")
            .env("trusted_ip", "198.18.99.2")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let t = Instant::now();
    let accepted = hook("client-connect");
    let took = t.elapsed();
    hook("client-disconnect");
    (took, accepted)
}

/// The registry replaced by a listener that accepts connections and never
/// answers, for 60 s, and the registry's node stopped (the others then ask
/// the registry for bootstrap peers and the network configuration, each
/// call waiting for its 20 s time-out): node1's status answers within a
/// second, its OpenVPN hook within a second, and no ping from node1 to
/// node2 (neighbours by their own tunnels) is lost.
#[test]
fn a_registry_that_never_answers_stalls_nothing() {
    // node2 keeps a tunnel to node1 (prefixes are given in order: node1
    // is 1/16): the network stays connected without node0.
    let mut net = Net(Some(Overlay::start_with(
        BIN.as_ref(),
        Registry::Ours,
        3,
        None,
        &[],
        &|_| {},
        &|n| match n {
            2 => vec!["--neighbour".into(), "1/16".into()],
            _ => vec![],
        },
    )));
    net.o().all_pairs_reach(Duration::from_secs(120));
    let node1 = subnet_of(net.o(), 1);
    assert!(node1.starts_with("2001:db8:42:1::/"), "{node1}");
    assert!(
        Lab::wait_until(Duration::from_secs(90), || has_tunnel_with(
            net.o(),
            2,
            &node1
        )),
        "node2 has no tunnel to its --neighbour node1\n{}",
        net.o().logs()
    );
    // Pings then stay on node1 and node2's own tunnels: without this wait,
    // they went through node0 when its tunnels were newer than the
    // neighbours' (babel had not yet heard each way on theirs), and were
    // lost for up to 3 s once it stopped while babel took the direct route.
    let node2 = subnet_of(net.o(), 2);
    assert!(
        Lab::wait_until(Duration::from_secs(60), || routes_directly(
            net.o(),
            1,
            &node2
        ) && routes_directly(
            net.o(),
            2,
            &node1
        )),
        "node1 and node2 do not route to each other directly\n{}",
        net.o().logs()
    );
    let o = net.o_mut();
    signal("-TERM", o.registry_pid);
    let pid = o.registry_pid;
    assert!(
        Lab::wait_until(Duration::from_secs(10), || !alive(pid)
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))),
        "registry still running"
    );
    // Accepts (the kernel completes the handshakes) and never reads.
    let hole = o.dir.join("black-hole.out");
    o.lab.spawn(
        "reg",
        &[
            "python3",
            "-c",
            "import socket, time\n\
             s = socket.socket()\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('198.18.1.2', 9080))\n\
             s.listen(128)\n\
             time.sleep(600)",
        ],
        &hole,
    );
    assert!(
        Lab::wait_until(Duration::from_secs(10), || o
            .lab
            .try_sh("reg", "bash -c 'exec 3<>/dev/tcp/198.18.1.2/9080'")),
        "black hole not listening"
    );
    let pid0 = o.node_pids[0];
    o.stop_node(pid0, "-TERM", Duration::from_secs(30));

    let watch = StatusWatch::start(net.o().node_dir(1).join("run"));
    let start = Instant::now();
    let (mut pings, mut lost, mut lost_at) = (0, 0, Vec::new());
    let mut hooks = Vec::new();
    let to2 = net.o().addrs[2].clone();
    while start.elapsed() < Duration::from_secs(60) {
        pings += 1;
        if !net
            .o()
            .lab
            .try_sh(&ns_of(1), &format!("ping -6 -c1 -W1 {to2}"))
        {
            lost += 1;
            lost_at.push(start.elapsed().as_secs());
        }
        hooks.push(hook_round_trip(net.o(), 1, "7/16"));
        std::thread::sleep(Duration::from_millis(300));
    }
    let answers = watch.finish();
    let log1 = net.o().node_output(1);
    let slowest_hook = hooks.iter().map(|h| h.0).max().unwrap_or_default();
    eprintln!(
        "stalls: node1 -> node2: {lost} of {pings} pings lost in 60 s (at {lost_at:?} s); \
         {} hook verdicts, slowest {:.3} s",
        hooks.len(),
        slowest_hook.as_secs_f64()
    );
    assert_status_kept_answering(&answers, net.o());
    // Any call that met the black hole: a bootstrap request, a
    // configuration fetch, or the renewal's CA check (registry calls take
    // turns: one stalled call delays the next by its 20 s).
    assert!(
        [
            "no bootstrap peer",
            "new network configuration",
            "CA check: registry"
        ]
        .iter()
        .any(|m| log1.contains(m)),
        "node1 never called the registry:\n{log1}"
    );
    assert_eq!(lost, 0, "node1 -> node2: pings lost at {lost_at:?} s");
    let bad: Vec<_> = hooks
        .iter()
        .filter(|(took, ok)| !ok || *took > STATUS_LIMIT)
        .collect();
    assert!(
        bad.is_empty(),
        "hook verdicts slower than {STATUS_LIMIT:?} or refused: {bad:?}"
    );
}
