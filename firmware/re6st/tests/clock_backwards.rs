//! The whole network (registry, nodes, their babeld and OpenVPN) on a
//! libfaketime clock set back 2 hours, then 1 day, once the overlay has
//! formed. In its own test binary: the environment set here reaches every
//! process the test starts (as in `clock_jump.rs`).
//!
//! What the code predicts: babeld times with the monotonic clock (not
//! faked here) and OpenVPN's timers only wait longer, so the tunnels stay
//! and the network stays connected; nothing reconnects; the node's
//! intervals (tunnel manager, announcements, peer cache saves) run on
//! the monotonic clock, so they go on (the peer cache is still saved every
//! minute); the certificates stay in use (nothing is due for renewal).
//! New TLS handshakes would be refused meanwhile: every certificate's
//! not-before (its issue time) now lies in the future.

use std::time::{Duration, Instant, SystemTime};

use re6st_testkit::overlay::{Overlay, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_re6st");
const NODES: u32 = 3;

/// Node `n`'s output, all runs (unreadable: the test fails).
fn logs_of(o: &Overlay, n: u32) -> String {
    o.node_output(n)
}

/// Established client tunnels of node `n`: (peer, iface). A node that
/// does not answer fails the test (it would read as "no tunnel", and
/// compare equal to another such reading).
fn established(o: &Overlay, n: u32) -> Vec<(String, String)> {
    let s = o.try_status(n).unwrap_or_else(|e| panic!("{e}"));
    let mut v: Vec<(String, String)> = s["tunnels"]
        .as_array()
        .unwrap_or_else(|| panic!("node{n}'s status has no tunnel list: {s}"))
        .iter()
        .filter(|t| t["state"] == "established")
        .map(|t| {
            (
                t["peer"].as_str().unwrap_or("").to_owned(),
                t["iface"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

#[test]
fn clock_set_back_keeps_tunnels_and_reachability() {
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        std::path::Path::new(lib).exists(),
        "libfaketime missing: make deps"
    );
    let clock = std::env::temp_dir().join(format!("re6st-clock-back-{}", std::process::id()));
    std::fs::write(&clock, "+0\n").unwrap();
    // Removed even when the test fails.
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _clock_file = Remove(clock.clone());
    // Only children inherit it; this is the only test of this binary.
    std::env::set_var("LD_PRELOAD", lib);
    std::env::set_var("FAKETIME_TIMESTAMP_FILE", &clock);
    std::env::set_var("FAKETIME_NO_CACHE", "1");
    std::env::set_var("FAKETIME_DONT_FAKE_MONOTONIC", "1");

    // Namespaces, processes and files go even when the test fails.
    struct Finish(Option<Overlay>);
    impl Drop for Finish {
        fn drop(&mut self) {
            if let Some(o) = self.0.take() {
                o.finish();
            }
        }
    }
    let net = Finish(Some(Overlay::start(
        BIN.as_ref(),
        Registry::Ours,
        NODES,
        None,
        &[],
    )));
    let o = net.0.as_ref().unwrap();
    o.all_pairs_reach(Duration::from_secs(120));
    // Tunnels settle (the first ones may still be negotiating).
    std::thread::sleep(Duration::from_secs(10));
    let tunnels: Vec<_> = (0..NODES).map(|n| established(o, n)).collect();
    assert!(
        tunnels.iter().any(|t| !t.is_empty()),
        "no tunnel: {tunnels:?}"
    );
    let tries = |o: &Overlay| -> usize {
        (0..NODES)
            .map(|n| logs_of(o, n).matches(": trying ").count())
            .sum()
    };
    let tries_before = tries(o);

    let mut reach_times = Vec::new();
    for (jump, watch) in [("-2h", 75u64), ("-1d", 45)] {
        let peers: Vec<_> = (0..NODES)
            .map(|n| o.node_dir(n).join("state/peers.bin"))
            .collect();
        let saved: Vec<_> = peers.iter().map(|p| mtime(p)).collect();
        std::fs::write(&clock, format!("{jump}\n")).unwrap();
        let t = Instant::now();
        // Every process started from here sees it (this one does not).
        let fake: i64 = o.lab.sh("n1", "date +%s").trim().parse().unwrap();
        let real = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let back = if jump == "-2h" { 7_200 } else { 86_400 };
        assert!((real - fake - back).abs() < 60, "{jump}: {fake} vs {real}");
        // Connected all along: checked every ~15 s.
        let mut worst = Duration::ZERO;
        while t.elapsed() < Duration::from_secs(watch) {
            let c = Instant::now();
            o.all_pairs_reach(Duration::from_secs(20));
            worst = worst.max(c.elapsed());
            std::thread::sleep(Duration::from_secs(15).saturating_sub(c.elapsed()));
        }
        reach_times.push((jump, worst));
        for n in 0..NODES {
            assert_eq!(
                established(o, n),
                tunnels[n as usize],
                "node{n}'s tunnels changed after {jump}\n{}",
                logs_of(o, n)
            );
        }
        if watch > 60 {
            // The peer cache is saved every minute (mtimes are the
            // kernel's real clock).
            for (n, p) in peers.iter().enumerate() {
                assert!(
                    mtime(p).is_some() && mtime(p) != saved[n],
                    "node{n} did not save its peer cache after {jump}\n{}",
                    logs_of(o, n as u32)
                );
            }
        }
    }
    let tries_after = tries(o);
    for n in 0..NODES {
        let log = logs_of(o, n);
        assert!(!log.contains("panicked"), "{log}");
        assert!(!log.contains("certificate renewed"), "{log}");
        let pid = o.node_pids[n as usize];
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "node{n} exited\n{log}"
        );
    }
    // No reconnect storm: no tunnel was even retried.
    assert_eq!(
        tries_after,
        tries_before,
        "tunnels reconnected after the clock went back\n{}",
        o.logs()
    );
    eprintln!(
        "clock_backwards: {NODES} nodes, tunnels {tunnels:?}; longest all-pairs check after the jump: {}",
        reach_times
            .iter()
            .map(|(j, w)| format!("{j}: {:.1} s", w.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
