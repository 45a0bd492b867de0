//! Nodes behind home routers: one whose router maps ports by UPnP
//! (Debian's miniupnpd) accepts incoming tunnels; one whose router does
//! not stays a client only. Both reach every node.

use std::time::Duration;

use re6st_testkit::nat::{forwardings, nat_router, public_ip, stun_server};
use re6st_testkit::netns::Lab;
use re6st_testkit::overlay::{ns_of, Overlay, Registry, NO_UNDERLAY_IP};

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

#[test]
fn nodes_behind_nat_with_and_without_upnp() {
    // Nodes 0-2 are on the internet; 3 is behind a router with UPnP, 4
    // behind one without. Neither NATed node is given an --ip: they find
    // their addresses themselves (UPnP first, as upstream's default).
    let (upnp, plain) = (3u32, 4u32);
    let logs = std::env::temp_dir().join(format!("re6st-nat-{}", std::process::id()));
    std::fs::create_dir_all(&logs).unwrap();
    let setup_logs = logs.clone();
    let o = Overlay::start_with(
        BIN.as_ref(),
        Registry::Ours,
        5,
        None,
        // Short refreshes: a public node whose tunnels are all taken when
        // node 3 appears soon drops one for its --neighbour.
        &["--tunnel-refresh", "10"],
        &move |lab: &mut Lab| {
            stun_server(lab, &setup_logs);
            nat_router(lab, upnp, &ns_of(upnp), true, &setup_logs);
            nat_router(lab, plain, &ns_of(plain), false, &setup_logs);
        },
        &|n| match n {
            // The public nodes always want a tunnel to node 3 (our registry
            // numbers anonymous nodes in order); node 3 itself connects to
            // two of them at most, so one at least must come in through
            // the mapping. Without this, whether anybody picks node 3 is
            // chance.
            0..=2 => vec!["--neighbour".into(), format!("{upnp}/16")],
            _ => vec![NO_UNDERLAY_IP.into()],
        },
    );
    assert_eq!(o.cn(upnp), format!("{upnp}/16"));
    let public: Vec<String> = (0..3)
        .map(|n| format!("{}/64", o.addrs[n].strip_suffix('1').unwrap()))
        .collect();
    o.all_pairs_reach(Duration::from_secs(150));

    // The UPnP node: its router forwards its servers' ports, it announces
    // the router's public address with them, and peers connect to it.
    let ok = Lab::wait_until(Duration::from_secs(150), || {
        o.status(upnp).is_some_and(|s| {
            s["ipv4"] == "upnp"
                && s["port_mappings"].as_array().is_some_and(|m| !m.is_empty())
                && s["reachable_at"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(&format!("{},", public_ip(upnp))))
                && s["served"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| public.iter().any(|q| p == q.as_str())))
        })
    });
    assert!(
        ok,
        "node {upnp} not reachable through its UPnP mappings: {:?}\nforwardings: {}\n{}",
        o.status(upnp),
        forwardings(&o.lab, upnp),
        o.logs()
    );
    // One forwarding per server (the lab's nodes serve TCP only).
    let rules = forwardings(&o.lab, upnp);
    let mappings = o.status(upnp).unwrap()["port_mappings"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(rules.lines().count(), mappings, "{rules}");
    assert!(rules.contains(&format!("198.19.{}.2", upnp + 1)), "{rules}");

    // The other one: no mapping, what peers see as its address, nobody
    // can connect to it, and few client tunnels (2, as upstream).
    let s = o.status(plain).expect("status");
    assert_eq!(
        s["ipv4"], "upnp (no gateway mapping: as seen by peers)",
        "{s}"
    );
    assert_eq!(s["port_mappings"].as_array().map(Vec::len), Some(0), "{s}");
    assert!(
        s["reachable_at"]
            .as_str()
            .is_some_and(|a| a.starts_with(&format!("{},1194,", public_ip(plain)))),
        "{s}"
    );
    assert_eq!(s["served"].as_array().map(Vec::len), Some(0), "{s}");
    let tunnels = s["tunnels"].as_array().map(Vec::len).unwrap_or(0);
    assert!((1..=2).contains(&tunnels), "{s}");

    // Stopping the UPnP node removes its mappings from the router.
    let pid = o.node_pids[upnp as usize];
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let gone = Lab::wait_until(Duration::from_secs(15), || {
        forwardings(&o.lab, upnp).is_empty()
    });
    assert!(gone, "mappings left: {}", forwardings(&o.lab, upnp));
    o.finish();
    std::fs::remove_dir_all(&logs).ok();
}
