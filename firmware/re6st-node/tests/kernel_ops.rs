//! Kernel operations ([`NetOp`]) against a real kernel, in a throw-away
//! network namespace: what `ip` lists back is what each operation meant,
//! the route listings read what `ip` added, and the set-up guard leaves
//! nothing behind. Needs root.

use std::process::Command;

use re6st_node::babel::kernel_check::kernel_routes;
use re6st_node::daemon::handover;
use re6st_node::kernel::netlink::Netlink;
use re6st_node::kernel::op::{PROTO_BABEL, PROTO_BOOT, PROTO_STATIC};
use re6st_node::kernel::{Addr, NetOp, Route, Setup};
use re6st_testkit::netns::Lab;

fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

const STATE: &str = "ip addr; ip -6 route show table all; ip -4 route show table all; ip -d link";

#[test]
fn set_up_is_what_ip_would_do_and_is_all_undone() {
    let mut lab = Lab::new();
    lab.add_ns("k");
    lab.sh(
        "k",
        "ip link add d0 type veth peer name d1; ip link set d1 up; ip link set d0 up; \
         ip addr add 198.18.7.2/24 dev d0",
    );
    let (during, after, before) = lab.run_in("k", || {
        let before = sh(STATE);
        let mut s = Setup::new(0);
        let ops = [
            NetOp::AddrAdd(Addr {
                ip: ip("2001:db8:42:1::1"),
                len: 64,
                dev: "d0".into(),
            }),
            NetOp::RouteAdd(Route::unreachable(ip("2001:db8:42::"), 48, PROTO_BOOT)),
            NetOp::RouteAdd(Route::unreachable(ip("198.19.128.0"), 17, PROTO_STATIC)),
            NetOp::AddrAdd(Addr {
                ip: ip("198.19.128.129"),
                len: 32,
                dev: "d0".into(),
            }),
            NetOp::TapAdd("re6stnet1".into()),
            NetOp::LinkUp {
                dev: "re6stnet1".into(),
                mtu: Some(1400),
            },
            NetOp::RouteAdd(Route::via(
                ip("198.19.3.2"),
                32,
                Some(ip("198.18.7.1")),
                PROTO_BOOT,
            )),
        ];
        for op in ops {
            s.apply(op).unwrap();
        }
        // An addition already done fails (and is not recorded twice).
        let again = NetOp::RouteAdd(Route::unreachable(ip("2001:db8:42::"), 48, PROTO_BOOT));
        let pending = s.pending().len();
        assert!(Netlink::open().unwrap().apply(&again).is_err());
        assert_eq!(s.pending().len(), pending);
        let during = sh(STATE);
        drop(s);
        (during, sh(STATE), before)
    });
    for want in [
        "inet6 2001:db8:42:1::1/64 scope global",
        "inet 198.19.128.129/32 scope global d0",
        "unreachable 2001:db8:42::/48 dev lo metric 1024",
        "unreachable 198.19.128.0/17 proto static",
        "198.19.3.2 via 198.18.7.1 dev d0",
        "UP> mtu 1400",
        "tun type tap pi off vnet_hdr off persist on",
    ] {
        assert!(during.contains(want), "{want}:\n{during}");
    }
    let ifindex_free = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("fe80"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(ifindex_free(&after), ifindex_free(&before), "{after}");
}

#[test]
fn babel_routes_are_listed_copied_below_babel_and_repaired() {
    let mut lab = Lab::new();
    lab.add_ns("k");
    lab.sh(
        "k",
        "ip link add d0 type veth peer name d1; ip link set d1 up; ip link set d0 up; \
         ip -6 addr add 2001:db8:42:1::1/64 dev d0; \
         ip -6 route add 2001:db8:42:5::/64 from 2001:db8:42::/48 via fe80::1 dev d0 proto 42; \
         ip -4 route add 198.19.9.0/24 via inet6 fe80::3 dev d0 proto 42; \
         ip -6 route add unreachable 2001:db8:42:7::/64 proto 42",
    );
    let (listed, held, released, repaired) = lab.run_in("k", || {
        let mut nl = Netlink::open().unwrap();
        let mut all = nl.routes(false, Some(PROTO_BABEL), None).unwrap();
        all.extend(nl.routes(true, Some(PROTO_BABEL), None).unwrap());
        let listed = kernel_routes(all);
        handover::hold("d0");
        let held = sh("ip -6 route show proto 201; ip -4 route show proto 201");
        handover::release("d0");
        let released = sh("ip -6 route show proto 201; ip -4 route show proto 201");
        let mut fix = Route::via(ip("2001:db8:42:6::"), 64, Some(ip("fe80::2")), PROTO_BABEL);
        fix.dev = Some("d0".into());
        fix.metric = Some(1024);
        fix.onlink = true;
        fix.pref_src = Some(ip("2001:db8:42:1::1"));
        nl.apply(&NetOp::RouteReplace(fix.clone())).unwrap();
        nl.apply(&NetOp::RouteReplace(fix)).unwrap();
        (
            listed,
            held,
            released,
            sh("ip -6 route show 2001:db8:42:6::/64"),
        )
    });
    // The unreachable route is no forwarding route.
    assert_eq!(listed.len(), 2, "{listed:?}");
    let sourced = &listed[&((ip("2001:db8:42:5::"), 64), (ip("2001:db8:42::"), 48))];
    assert_eq!(sourced.via, Some(ip("fe80::1")));
    assert_eq!(sourced.dev, "d0");
    let v4 = &listed[&((ip("198.19.9.0"), 24), (ip("0.0.0.0"), 0))];
    assert_eq!(v4.via, Some(ip("fe80::3")));
    assert_eq!(
        held,
        "2001:db8:42:5::/64 from 2001:db8:42::/48 via fe80::1 dev d0 metric 65000 pref medium\n\
         198.19.9.0/24 via inet6 fe80::3 dev d0 metric 65000 \n"
    );
    assert_eq!(released, "");
    assert_eq!(
        repaired,
        "2001:db8:42:6::/64 via fe80::2 dev d0 proto babel src 2001:db8:42:1::1 metric 1024 onlink pref medium\n"
    );
}

#[test]
fn the_route_to_a_gateway_says_whether_it_is_on_the_link() {
    let mut lab = Lab::new();
    lab.add_ns("k");
    lab.sh(
        "k",
        "ip link add d0 type veth peer name d1; ip link set d1 up; ip link set d0 up; ip addr add 198.18.7.2/24 dev d0; \
         ip route add default via 198.18.7.1; ip route add unreachable 198.18.250.0/24",
    );
    lab.run_in("k", || {
        let mut nl = Netlink::open().unwrap();
        let on_link = nl.route_to(ip("198.18.7.1")).unwrap();
        assert_eq!((on_link.via, on_link.dev.as_deref()), (None, Some("d0")));
        let far = nl.route_to(ip("198.18.200.1")).unwrap();
        assert_eq!(far.via, Some(ip("198.18.7.1")));
        assert!(nl.route_to(ip("198.18.250.1")).is_err());
    });
}

/// What a socket gets when sending to babel's multicast group on `dev`.
fn send_to_babel_group(dev: &str) -> String {
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
         try:\n    s.sendto(b'x', ('ff02::1:6', 6696, 0, socket.if_nametoindex('{dev}'))); print('sent')\n\
         except OSError as e: print(e.strerror)\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_muted_interface_sends_no_multicast_until_unmuted() {
    let mut lab = Lab::new();
    lab.add_ns("k");
    // Two interfaces: each has its own multicast route, all alike but for
    // the device, and only d0's goes and comes back.
    lab.sh(
        "k",
        "ip link add d0 type veth peer name d1; ip link set d1 up; ip link set d0 up",
    );
    let (before, muted, muted_twice, route_muted, unmuted, unmuted_twice, route_back, after) = lab
        .run_in("k", || {
            // The kernel adds the multicast route once the link is ready.
            let t0 = std::time::Instant::now();
            while !sh("ip -6 route show table local dev d0").contains("multicast")
                && t0.elapsed().as_secs() < 10
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let before = send_to_babel_group("d0");
            let muted = handover::mute("d0", true).map_err(|e| e.to_string());
            let muted_twice = handover::mute("d0", true).map_err(|e| e.to_string());
            let route_muted = sh("ip -6 route show table local dev d0 type multicast");
            let sent_muted = (send_to_babel_group("d0"), send_to_babel_group("d1"));
            let unmuted = handover::mute("d0", false).map_err(|e| e.to_string());
            let unmuted_twice = handover::mute("d0", false).map_err(|e| e.to_string());
            let route_back = sh("ip -6 route show table local dev d0 type multicast");
            let after = (send_to_babel_group("d0"), send_to_babel_group("d1"));
            (
                before,
                (muted, sent_muted),
                muted_twice,
                route_muted,
                unmuted,
                unmuted_twice,
                route_back,
                after,
            )
        });
    assert_eq!(before, "sent");
    assert_eq!(
        muted,
        (
            Ok(()),
            ("Network is unreachable".to_owned(), "sent".to_owned())
        )
    );
    assert_eq!(muted_twice, Ok(()));
    assert_eq!(route_muted, "");
    assert_eq!(unmuted, Ok(()));
    assert_eq!(unmuted_twice, Ok(()));
    // As the kernel had it.
    assert_eq!(
        route_back,
        "multicast ff00::/8 proto kernel metric 256 pref medium\n"
    );
    assert_eq!(after, ("sent".to_owned(), "sent".to_owned()));
}
