//! re6st networks in namespaces: a registry (ours or upstream's) with its
//! own node, and nodes that provision themselves, bootstrap through the
//! registry, open OpenVPN tunnels and route with babeld until they reach
//! each other; then failures: registry down, restarts, corrupt state,
//! garbage datagrams.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use re6st_testkit::netns::Lab;
use re6st_testkit::overlay::{ns_of, Overlay, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

#[test]
fn nodes_reach_each_other_over_the_overlay() {
    // Our registry's node and 7 more; nodes 6 and 7 cannot reach each
    // other directly. The registry takes private requests from its own
    // address too (its `topology` is asked below, from its namespace).
    let o = Overlay::start(
        BIN.as_ref(),
        Registry::Ours,
        8,
        Some((6, 7)),
        &["--authorized-origin", "198.18.1.2"],
    );
    o.all_pairs_reach(Duration::from_secs(120));
    let route = o.lab.sh("n1", &format!("ip -6 route get {}", o.addrs[2]));
    assert!(route.contains("re6stnet"), "{route}");
    assert!(
        !o.lab.try_sh("n6", "ping -c1 -W1 198.18.8.2"),
        "underlay should be cut"
    );
    let route = o.lab.sh("n6", &format!("ip -6 route get {}", o.addrs[7]));
    assert!(route.contains("re6stnet"), "{route}");

    // The status command: each node's client tunnels are established, go
    // to other nodes of the network, and carry routes; our certificate
    // and the configuration version are there.
    let run = |n: u32| o.node_dir(n).join("run").display().to_string();
    for n in 0..8 {
        let s = o.status(n).expect("status");
        assert_eq!(s["address"], o.addrs[n as usize].as_str(), "{s}");
        assert!(s["config_version"].as_u64().unwrap() >= 1, "{s}");
        let not_after = s["cert_not_after"].as_i64().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(not_after > now + 300 * 86_400, "{s}");
        assert_eq!(s["known_nodes"].as_u64(), Some(7), "{s}");
        let tunnels = s["tunnels"].as_array().unwrap();
        let served = s["served"].as_array().unwrap();
        assert!(
            !tunnels.is_empty() || !served.is_empty(),
            "node{n} has no tunnel: {s}"
        );
        for t in tunnels {
            let peer = t["peer"].as_str().unwrap();
            let base = peer.split('/').next().unwrap();
            assert!(
                o.addrs.iter().any(|a| a.strip_suffix('1') == Some(base)),
                "{peer} is not a node: {s}"
            );
            // The address in use: one of the peer's (udp and tcp servers).
            let addr = t["address"].as_str().unwrap();
            assert!(addr.starts_with("198.18."), "{s}");
            assert!(
                ["udp", "tcp"].contains(&t["protocol"].as_str().unwrap())
                    && addr.ends_with(t["protocol"].as_str().unwrap()),
                "{s}"
            );
        }
    }
    let total_routes: u64 = (0..8)
        .map(|n| {
            let s = o.status(n).expect("status");
            s["tunnels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["routes"].as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();
    assert!(total_routes > 0, "no routes through any client tunnel");
    let human = Command::new(BIN)
        .args(["ctl", "status", "-r", &run(1)])
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("certificate valid until"), "{human}");
    assert!(human.contains("routes to 7 nodes"), "{human}");

    // The registry's private `topology`: its node relays the request over
    // the peer protocol to every node it learns of, and each node answers
    // with its tunnels. Every node answers, and the graph is the tunnels
    // the nodes show (`client -> server`), read while they did not change.
    let cns: Vec<String> = (0..8).map(|n| o.cn(n)).collect();
    let cn_of = |peer: &str| -> String {
        let n = o
            .addrs
            .iter()
            .position(|a| format!("{}/64", a.strip_suffix('1').unwrap()) == peer)
            .unwrap_or_else(|| panic!("{peer} is not a node"));
        cns[n].clone()
    };
    let shown = || -> BTreeSet<(String, String)> {
        let mut edges = BTreeSet::new();
        for (n, cn) in cns.iter().enumerate() {
            let s = o
                .status(n as u32)
                .unwrap_or_else(|| panic!("node{n} does not answer ctl status"));
            for t in s["tunnels"].as_array().unwrap() {
                edges.insert((cn.clone(), cn_of(t["peer"].as_str().unwrap())));
            }
            for p in s["served"].as_array().unwrap() {
                edges.insert((cn_of(p.as_str().unwrap()), cn.clone()));
            }
        }
        edges
    };
    let topology = || -> serde_json::Value {
        let body = o.lab.sh(
            "reg",
            "python3 -c \"import urllib.request; \
             print(urllib.request.urlopen('http://198.18.1.2:9080/topology', timeout=60).read().decode())\"",
        );
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("topology: {e}: {body}"))
    };
    let mut compared = false;
    for _ in 0..5 {
        let before = shown();
        let t = topology();
        if shown() != before {
            continue; // a tunnel changed meanwhile: read again
        }
        let all: BTreeSet<String> = cns.iter().cloned().collect();
        let answered: BTreeSet<String> = t[""]
            .as_array()
            .unwrap_or_else(|| panic!("{t}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(answered, all, "not every node answered: {t}");
        let mut edges = BTreeSet::new();
        for (node, servers) in t.as_object().unwrap() {
            for s in servers.as_array().unwrap() {
                if !node.is_empty() {
                    edges.insert((node.clone(), s.as_str().unwrap().to_owned()));
                }
            }
        }
        assert_eq!(edges, before, "topology {t}");
        assert!(!edges.is_empty());
        compared = true;
        break;
    }
    assert!(compared, "the tunnels changed at each of 5 readings");
    o.finish();
}

#[test]
fn nodes_join_a_network_run_by_upstreams_registry() {
    // Upstream's registry (re6stnet 0.642) provisions every node and reads
    // routes from our node0 through its babeld.sock (upstream's protocol,
    // served by our node from stock babeld) to answer getBootstrapPeer.
    let o = Overlay::start(BIN.as_ref(), Registry::Upstream, 4, Some((2, 3)), &[]);
    o.all_pairs_reach(Duration::from_secs(120));
    let route = o.lab.sh("n2", &format!("ip -6 route get {}", o.addrs[3]));
    assert!(route.contains("re6stnet"), "{route}");
    let log = std::fs::read_to_string(o.dir.join("registry/registry.log")).unwrap_or_default();
    assert!(log.contains("Sending bootstrap peer"), "{log}");
    // What upstream's registry reads from node0's babeld.sock: a route to
    // every other node.
    let sock = o.node_dir(0).join("run/babeld.sock");
    let script = "import logging, sys\nlogging.trace = lambda *a, **k: None\n\
        from re6st import ctl, utils\n\
        net = utils.binFromIp('2001:db8:42::')[:48]\n\
        print(sorted(utils.ipFromBin(net + p) for p in ctl.iterRoutes(sys.argv[1], net)))";
    let seen = re6st_testkit::run_upstream(script, &[&sock.display().to_string()], b"");
    let seen = String::from_utf8_lossy(&seen);
    for n in 1..4 {
        let net = o.addrs[n].strip_suffix('1').unwrap();
        assert!(
            seen.contains(&format!("'{net}'")),
            "node{n} ({net}) missing: {seen}"
        );
    }
    o.finish();
}

#[test]
fn lan_hosts_get_slaac_addresses_and_reach_the_overlay() {
    // node1 is a router with a LAN (lan0) and a host behind it; its re6st
    // address lives on lan0 (-I), `re6st lan` advertises the /64.
    let o = Overlay::start_with(
        BIN.as_ref(),
        Registry::Ours,
        3,
        None,
        &[],
        &|lab| {
            lab.add_ns("host");
            lab.link("n1", &[], "host", &[], "lan0");
            lab.sh("n1", "sysctl -qw net.ipv6.conf.all.forwarding=1");
            // A host, not a router (lab namespaces forward), so it
            // listens to advertisements.
            lab.sh("host", "sysctl -qw net.ipv6.conf.all.forwarding=0");
        },
        &|n| {
            if n == 1 {
                vec!["-I".into(), "lan0".into()]
            } else {
                vec![]
            }
        },
    );
    o.all_pairs_reach(Duration::from_secs(120));
    let d = o.node_dir(1);
    let mut lab = o.lab;
    let ra_log = o.dir.join("lan.out");
    lab.spawn(
        "n1",
        &[
            BIN,
            "lan",
            "-i",
            "lan0",
            "--ca",
            &d.join("ca.crt").display().to_string(),
            "--cert",
            &d.join("cert.crt").display().to_string(),
            "--dns",
            "2001:db8::53",
        ],
        &ra_log,
    );
    // The host autoconfigures an address in node1's /64.
    let net64 = o.addrs[1].strip_suffix("::1").unwrap().to_string();
    let prefix = net64.trim_end_matches(':');
    let got = Lab::wait_until(Duration::from_secs(30), || {
        lab.sh("host", "ip -6 addr show dev lan0 scope global")
            .contains(prefix)
    });
    assert!(
        got,
        "no SLAAC address in {net64}/64: {}\n{}",
        lab.sh("host", "ip -6 addr; ip -6 route"),
        std::fs::read_to_string(&ra_log).unwrap_or_default()
    );
    // ... and a default route through the router, then reaches node2 on
    // the other side of the overlay.
    let to = &o.addrs[2];
    assert!(
        Lab::wait_until(Duration::from_secs(30), || lab
            .try_sh("host", &format!("ping -6 -c1 -W1 {to}"))),
        "host cannot reach node2 ({to}): {}",
        lab.sh("host", "ip -6 addr; ip -6 route")
    );
    // Stopping the advertiser withdraws us as the host's router.
    lab.sh("n1", "pkill -TERM -f '[r]e6st lan'");
    assert!(
        Lab::wait_until(Duration::from_secs(10), || !lab
            .sh("host", "ip -6 route show default")
            .contains("via")),
        "default route still there"
    );
    drop(lab);
    re6st_testkit::overlay::remove_dir(&o.dir);
}

#[test]
fn nodes_on_one_lan_route_over_it_without_a_tunnel() {
    // node1 and node2 share a LAN segment (lan0) and run babel on it (-i).
    let o = Overlay::start_with(
        BIN.as_ref(),
        Registry::Ours,
        4,
        None,
        &[],
        &|lab| lab.link("n1", &[], "n2", &[], "lan0"),
        &|n| {
            if n == 1 || n == 2 {
                vec!["-i".into(), "lan0".into()]
            } else {
                vec![]
            }
        },
    );
    o.all_pairs_reach(Duration::from_secs(120));
    let (a1, a2) = (&o.addrs[1], &o.addrs[2]);
    let subnet = |a: &str| format!("{}/64", a.strip_suffix('1').unwrap());
    // Tunnel peers of node n, both ways.
    let peers = |n: u32| -> Vec<String> {
        let s = o.status(n).unwrap_or_default();
        s["tunnels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["peer"].as_str())
            .chain(
                s["served"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str()),
            )
            .map(str::to_owned)
            .collect()
    };
    // A tunnel opened at start-up, before babel saw the LAN, is closed.
    let settled = || {
        [("n1", a2), ("n2", a1)].iter().all(|(ns, to)| {
            o.lab
                .sh(ns, &format!("ip -6 route get {to}"))
                .contains("dev lan0")
        }) && !peers(1).contains(&subnet(a2))
            && !peers(2).contains(&subnet(a1))
    };
    assert!(
        Lab::wait_until(Duration::from_secs(90), settled),
        "n1: {} {:?}\nn2: {} {:?}",
        o.lab.sh("n1", &format!("ip -6 route get {a2}")),
        peers(1),
        o.lab.sh("n2", &format!("ip -6 route get {a1}")),
        peers(2)
    );
    o.all_pairs_reach(Duration::from_secs(60));
    o.finish();
}

#[test]
fn client_mode_node_reaches_everyone_through_its_one_tunnel() {
    // node3 runs with --client: no server, one tunnel to node0's server.
    let o = Overlay::start_with(BIN.as_ref(), Registry::Ours, 4, None, &[], &|_| {}, &|n| {
        if n == 3 {
            vec!["--client".into(), "198.18.1.2,1194,tcp".into()]
        } else {
            vec![]
        }
    });
    o.all_pairs_reach(Duration::from_secs(120));
    let route = o.lab.sh("n3", &format!("ip -6 route get {}", o.addrs[1]));
    assert!(route.contains("dev re6stnet1"), "{route}");
    assert!(
        !o.lab.try_sh("n3", "ip link show re6stnet-tcp"),
        "a client-mode node runs no server"
    );
    o.finish();
}

#[test]
fn ipv4_payload_reaches_every_node() {
    // The network carries IPv4 too: each node a /25 of 198.19.128.0/17,
    // numbered by its certificate's serial; node3 is a client-only node.
    let o = Overlay::start_with(
        BIN.as_ref(),
        Registry::Ours,
        4,
        None,
        &["--ipv4", "198.19.128.0/17", "8"],
        &|_| {},
        &|n| {
            if n == 3 {
                vec!["--client".into(), "198.18.1.2,1194,tcp".into()]
            } else {
                vec![]
            }
        },
    );
    o.all_pairs_reach(Duration::from_secs(120));
    let payload: Vec<String> = (0..4)
        .map(|n| {
            let s = o.status(n).expect("status");
            let p = s["ipv4_payload"]
                .as_str()
                .unwrap_or_else(|| panic!("{s}"))
                .to_owned();
            assert!(p.starts_with("198.19.") && p.ends_with("/25"), "{s}");
            p.split('/').next().unwrap().to_owned()
        })
        .collect();
    let distinct: std::collections::BTreeSet<_> = payload.iter().collect();
    assert_eq!(distinct.len(), 4, "{payload:?}");
    for a in 0..4u32 {
        for (b, to) in payload.iter().enumerate() {
            if a as usize == b {
                continue;
            }
            let ok = Lab::wait_until(Duration::from_secs(60), || {
                o.lab.try_sh(&ns_of(a), &format!("ping -4 -c1 -W1 {to}"))
            });
            assert!(ok, "node{a} cannot reach node{b}'s IPv4 {to}\n{}", o.logs());
        }
    }
    let route = o.lab.sh("n1", &format!("ip -4 route get {}", payload[2]));
    assert!(route.contains("re6stnet"), "{route}");
    assert!(route.contains(&format!("src {}", payload[1])), "{route}");
    o.finish();
}

#[test]
fn remote_gateway_carries_the_tunnels() {
    // node2 has a second uplink (198.18.202.0/24); its primary one drops
    // outgoing tunnel connections, so its client tunnels work only if
    // --remote-gateway sends them through the second.
    let o = Overlay::start_with(
        BIN.as_ref(),
        Registry::Ours,
        4,
        None,
        &[],
        &|lab: &mut Lab| {
            lab.link(
                "inet",
                &["198.18.202.1/24"],
                "n2",
                &["198.18.202.2/24"],
                "up2",
            );
            lab.sh("n2", "iptables -A OUTPUT -o h3 -p tcp --dport 1194 -j DROP; iptables -A OUTPUT -o h3 -p udp --dport 1194 -j DROP");
        },
        &|n| {
            if n == 2 {
                vec!["--remote-gateway".into(), "198.18.202.1".into()]
            } else {
                vec![]
            }
        },
    );
    o.all_pairs_reach(Duration::from_secs(120));
    let established = Lab::wait_until(Duration::from_secs(60), || {
        o.status(2).is_some_and(|s| {
            s["tunnels"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["state"] == "established"))
        })
    });
    assert!(established, "{:?}", o.status(2));
    let routes = o.lab.sh("n2", "ip -4 route show");
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("198.18.") && l.contains("via 198.18.202.1")),
        "{routes}"
    );
    // The routes go with the node.
    let pid = o.node_pids[2];
    signal("-TERM", pid);
    let gone = Lab::wait_until(Duration::from_secs(15), || {
        !o.lab
            .sh("n2", "ip -4 route show")
            .contains("via 198.18.202.1")
    });
    assert!(gone, "{}", o.lab.sh("n2", "ip -4 route show"));
    o.finish();
}

#[test]
fn gateway_node_gives_the_overlay_a_way_out() {
    // node1 (--gateway) also sits on an IPv6 network outside the overlay
    // ("world", 2001:db8:ffff::/64) and has its default route there; the
    // other nodes reach that network through it, from their re6st
    // addresses (a source-specific default route).
    let o = Overlay::start_with(
        BIN.as_ref(),
        Registry::Ours,
        4,
        None,
        &[],
        &|lab: &mut Lab| {
            lab.add_ns("world");
            lab.link(
                "n1",
                &["2001:db8:ffff::2/64"],
                "world",
                &["2001:db8:ffff::1/64"],
                "w0",
            );
            lab.sh("n1", "ip -6 route add default via 2001:db8:ffff::1");
            lab.sh(
                "world",
                "ip -6 route add 2001:db8:42::/48 via 2001:db8:ffff::2",
            );
        },
        &|n| {
            if n == 1 {
                vec!["--gateway".into()]
            } else {
                vec![]
            }
        },
    );
    o.all_pairs_reach(Duration::from_secs(120));
    for n in [0, 2, 3] {
        let ok = Lab::wait_until(Duration::from_secs(60), || {
            o.lab.try_sh(&ns_of(n), "ping -6 -c1 -W1 2001:db8:ffff::1")
        });
        let routes = o.lab.sh(&ns_of(n), "ip -6 route show");
        assert!(
            ok,
            "node{n} cannot reach the world through the gateway:\n{routes}"
        );
        assert!(
            routes
                .lines()
                .any(|l| l.starts_with("default from 2001:db8:42::/48") && l.contains("re6stnet")),
            "{routes}"
        );
    }
    o.finish();
}

#[test]
fn neighbour_tunnels_survive_rewiring() {
    // Tunnels are rewired every 10 s, but node2 keeps its --neighbour
    // tunnel to node4 (our registry numbers anonymous nodes in order).
    let o = Overlay::start_with(
        BIN.as_ref(),
        Registry::Ours,
        5,
        None,
        &["--tunnel-refresh", "10"],
        &|_| {},
        &|n| {
            if n == 2 {
                vec!["--neighbour".into(), "4/16".into()]
            } else {
                vec![]
            }
        },
    );
    assert_eq!(o.cn(4), "4/16");
    let subnet4 = format!("{}/64", o.addrs[4].strip_suffix('1').unwrap());
    let has_it = |o: &Overlay| {
        o.status(2).is_some_and(|s| {
            s["tunnels"].as_array().is_some_and(|t| {
                t.iter()
                    .any(|t| t["peer"] == subnet4.as_str() && t["state"] == "established")
            })
        })
    };
    let t = std::time::Instant::now();
    assert!(
        Lab::wait_until(Duration::from_secs(120), || has_it(&o)),
        "no tunnel to the neighbour: {:?}",
        o.status(2)
    );
    eprintln!(
        "neighbour tunnel established {:.1} s after the network started",
        t.elapsed().as_secs_f64()
    );
    // Several refresh periods later, still there.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_secs(5));
        assert!(
            has_it(&o),
            "the neighbour tunnel was dropped: {:?}",
            o.status(2)
        );
    }
    o.finish();
}

#[test]
fn survives_registry_loss_restarts_corrupt_state_and_garbage() {
    let mut o = Overlay::start(BIN.as_ref(), Registry::Ours, 4, None, &[]);
    o.all_pairs_reach(Duration::from_secs(120));

    // Corrupt state files: a restarted node logs it, starts over, rejoins.
    o.stop_node(o.node_pids[3], "-TERM", Duration::from_secs(20));
    assert!(
        !o.lab.try_sh("n3", "ip link show re6stnet1"),
        "taps left behind"
    );
    assert!(
        !o.lab
            .sh("n3", "ip -6 addr show dev lo")
            .contains("2001:db8:42"),
        "address left behind"
    );
    for f in ["peers.bin", "network-config.bin"] {
        std::fs::write(
            o.node_dir(3).join("state").join(f),
            b"re6stpc1\xff\xff garbage",
        )
        .unwrap();
    }
    // Upstream's --up and --daemon come along.
    let up_file = o.dir.join("up-ran");
    o.start_node_with(
        3,
        &[
            "--up",
            &format!("touch {}", up_file.display()),
            "--daemon",
            "exec sleep 4242",
            "--country",
            "FR",
        ],
    );
    o.all_pairs_reach(Duration::from_secs(120));
    assert!(up_file.exists(), "--up did not run");
    assert!(
        o.lab.try_sh("n3", "pgrep -f '[s]leep 4242'"),
        "--daemon not running"
    );

    // Garbage, truncated and replayed-looking datagrams on port 326.
    let target = o.addrs[1].clone();
    let script = format!(
        "import socket, os\ns = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
         for n in [0, 1, 3, 4, 5, 24, 100, 1400]:\n    s.sendto(os.urandom(n), ('{target}', 326))\n\
         for seq in [0, 1, 2, 3, 99]:\n    s.sendto(seq.to_bytes(4, 'big') + os.urandom(40), ('{target}', 326))\n\
         s.sendto(b'0101\\x00\\x01', ('::1', 326))\n"
    );
    for ns in ["n2", "n1"] {
        o.lab.sh(
            ns,
            &format!("python3 -c \"{}\"", script.replace('"', "\\\"")),
        );
    }
    o.all_pairs_reach(Duration::from_secs(30));

    // The registry goes away: the network stays connected, and a node
    // restarted now rejoins from its caches.
    signal("-KILL", o.registry_pid);
    o.stop_node(o.node_pids[2], "-TERM", Duration::from_secs(20));
    o.start_node(2);
    o.all_pairs_reach(Duration::from_secs(120));
    let log = std::fs::read_to_string(
        o.node_dir(2)
            .join(format!("node-{}.out", o.node_pids.len() - 1)),
    )
    .unwrap_or_default();
    assert!(
        log.contains("using the cached network configuration"),
        "{log}"
    );
    // A stopping node stops its --daemon commands.
    signal("-TERM", o.node_pids[4]);
    assert!(
        Lab::wait_until(Duration::from_secs(15), || !o
            .lab
            .try_sh("n3", "pgrep -f '[s]leep 4242'")),
        "--daemon left behind"
    );
    o.finish();
}
