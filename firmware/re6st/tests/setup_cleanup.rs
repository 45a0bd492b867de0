//! A node whose set-up fails exits with a clear error and leaves the
//! kernel as it found it: no address, route or tap of its own (issue 15).

use std::time::Duration;

use re6st_testkit::netns::{alive, Lab};
use re6st_testkit::overlay::{ns_of, Overlay, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

/// Node `n`'s namespace: its addresses, routes (both families) and links,
/// without counters or link indexes that change on their own.
fn kernel_state(o: &Overlay, n: u32) -> String {
    let ns = ns_of(n);
    o.lab.sh(
        &ns,
        "ip -br addr; ip -6 route show table all; ip -4 route show table all; \
         ip -br link | awk '{print $1}'",
    )
}

/// Starts node `n` with `extra` options, waits for it to exit: what it
/// printed.
fn start_and_wait_for_exit(o: &mut Overlay, n: u32, extra: &[&str]) -> String {
    let run = o.node_pids.len();
    let pid = o.start_node_with(n, extra);
    assert!(
        Lab::wait_until(Duration::from_secs(60), || !alive(pid)),
        "node{n} with {extra:?} still runs\n{}",
        o.logs()
    );
    std::fs::read_to_string(o.node_dir(n).join(format!("node-{run}.out"))).unwrap_or_default()
}

/// `--remote-gateway` not an address, a gateway on no directly connected
/// network, and a tap the node cannot create (a link of that name is in
/// the way, after the address, the routes and two taps were set up): each
/// time the node exits with an error that says why, and the namespace is
/// as before.
#[test]
fn failed_set_up_leaves_nothing_behind() {
    let mut o = Overlay::start(BIN.as_ref(), Registry::Ours, 2, None, &[]);
    assert!(
        Lab::wait_until(Duration::from_secs(60), || o.status(1).is_some()),
        "node1 did not start\n{}",
        o.logs()
    );
    let pid = o.node_pids[1];
    o.stop_node(pid, "-TERM", Duration::from_secs(30));
    let before = kernel_state(&o, 1);
    assert!(!before.contains("re6stnet"), "{before}");

    let said = start_and_wait_for_exit(&mut o, 1, &["--remote-gateway", "not-an-address"]);
    assert!(
        said.contains("--remote-gateway \"not-an-address\": not an IPv4 address"),
        "{said}"
    );
    assert_eq!(kernel_state(&o, 1), before, "{said}");

    // n1 reaches 198.18.200.1 through its default route only.
    let said = start_and_wait_for_exit(&mut o, 1, &["--remote-gateway", "198.18.200.1"]);
    assert!(
        said.contains("--remote-gateway 198.18.200.1: not on a directly connected network"),
        "{said}"
    );
    assert_eq!(kernel_state(&o, 1), before, "{said}");

    // A gateway the kernel has no route to at all.
    o.lab
        .sh(&ns_of(1), "ip route add unreachable 198.18.250.0/24");
    let before_unreachable = kernel_state(&o, 1);
    let said = start_and_wait_for_exit(&mut o, 1, &["--remote-gateway", "198.18.250.1"]);
    assert!(
        said.contains("--remote-gateway 198.18.250.1: unreachable"),
        "{said}"
    );
    assert_eq!(kernel_state(&o, 1), before_unreachable, "{said}");
    o.lab
        .sh(&ns_of(1), "ip route del unreachable 198.18.250.0/24");

    // The last tap (client-count 2: re6stnet2) cannot be made.
    o.lab.sh(
        &ns_of(1),
        "ip link add re6stnet2 type veth peer name blocker",
    );
    let before = kernel_state(&o, 1);
    let said = start_and_wait_for_exit(&mut o, 1, &[]);
    assert!(said.contains("ip tuntap add dev re6stnet2"), "{said}");
    assert!(said.contains("ip tuntap add dev re6stnet1"), "{said}");
    assert_eq!(kernel_state(&o, 1), before, "{said}");
    o.finish();
}

/// With the network's IPv4 payload, set-up also adds an unreachable
/// route for it (`proto static`): a tap that cannot be made takes it back
/// with the rest, and a normal stop too.
#[test]
fn failed_set_up_with_ipv4_payload_leaves_nothing_behind() {
    let mut o = Overlay::start(
        BIN.as_ref(),
        Registry::Ours,
        2,
        None,
        &["--ipv4", "198.19.128.0/17", "8"],
    );
    assert!(
        Lab::wait_until(Duration::from_secs(60), || o.status(1).is_some()),
        "node1 did not start\n{}",
        o.logs()
    );
    let running = kernel_state(&o, 1);
    assert!(
        running.contains("unreachable 198.19.128.0/17 proto static"),
        "{running}"
    );
    let pid = o.node_pids[1];
    o.stop_node(pid, "-TERM", Duration::from_secs(30));
    let before = kernel_state(&o, 1);
    assert!(!before.contains("re6stnet"), "{before}");
    assert!(!before.contains("198.19.128.0/17"), "{before}");

    o.lab.sh(
        &ns_of(1),
        "ip link add re6stnet2 type veth peer name blocker",
    );
    let before = kernel_state(&o, 1);
    let said = start_and_wait_for_exit(&mut o, 1, &[]);
    assert!(said.contains("ip tuntap add dev re6stnet2"), "{said}");
    assert_eq!(kernel_state(&o, 1), before, "{said}");
    o.finish();
}
