//! The registry relay (`[::1]:326`) is driven only by the registry, not
//! by any local process (issue 15): 100,000 relay datagrams from a socket
//! of user `nobody`, each naming a different prefix to send to, are
//! ignored and leave the node's memory flat; the registry's own relay
//! still works (its `topology` goes through it, see overlay.rs).

use std::time::Duration;

use re6st_testkit::netns::Lab;
use re6st_testkit::overlay::{ns_of, Overlay, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

/// The node process's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[test]
fn relay_datagrams_from_another_user_are_ignored_with_memory_flat() {
    let o = Overlay::start(BIN.as_ref(), Registry::Ours, 2, None, &[]);
    o.all_pairs_reach(Duration::from_secs(120));
    let pid = o.node_pids[1];
    let before = rss_kib(pid);
    // Relay requests (`PREFIX\0CODE`) for 100,000 different /24 prefixes
    // of the network, code 1 (address query), from nobody's socket.
    let sender = "import socket\n\
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
        for i in range(100000):\n\
        \x20   p = format(i + 1000, '024b').encode()\n\
        \x20   s.sendto(p + b'\\0\\x01', ('::1', 326))\n";
    let sent = o.lab.try_sh(
        &ns_of(1),
        &format!(
            "setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 -c \"{sender}\""
        ),
    );
    assert!(sent, "the sender failed");
    // Let the node read what the socket buffered.
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_kib(pid);
    let log = o.node_output(1);
    eprintln!("relay flood: node1 RSS {before} KiB before, {after} KiB after 100,000 datagrams");
    assert!(
        log.contains("relay datagram from [::1]:") && log.contains("ignored"),
        "{log}"
    );
    assert!(
        after <= before + 2048,
        "node1 grew from {before} to {after} KiB"
    );
    // The node still works.
    assert!(
        Lab::wait_until(Duration::from_secs(10), || o.status(1).is_some()),
        "node1 does not answer"
    );
    o.all_pairs_reach(Duration::from_secs(60));
    o.finish();
}
