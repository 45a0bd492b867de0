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
