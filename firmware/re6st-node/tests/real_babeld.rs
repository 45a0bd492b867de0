//! Our babeld configuration, control client and routing table against
//! real babeld 1.12 processes in two network namespaces.

use std::time::{Duration, Instant};

use re6st_node::babel::client::BabelClient;
use re6st_node::babel::config::BabelConfig;
use re6st_node::babel::control::Line;
use re6st_node::babel::monitor::{self, MonitorEvent};
use re6st_node::babel::table::Table;
use re6st_node::daemon::handover;
use re6st_proto::prefix::Prefix;
use re6st_testkit::netns::Lab;

fn config(dir: &std::path::Path, n: u8, network: Prefix, hello: u32) -> BabelConfig {
    BabelConfig {
        address: format!("2001:db8:{n}::1").parse().unwrap(),
        subnet_len: 48,
        ipv4: None,
        network,
        gateway: false,
        ipv6_subtrees: true,
        hello,
        default: "type tunnel".into(),
        hmac_sign: Some(vec![7; 16]),
        hmac_accept: None,
        log: Some(dir.join(format!("babeld{n}.log"))),
        state: dir.join(format!("babeld{n}.state")),
        pidfile: dir.join(format!("babeld{n}.pid")),
        control_socket: dir.join(format!("babeld{n}.sock")),
        extra: vec![],
        interfaces: vec!["t0".into()],
    }
}

async fn table(sock: &std::path::Path) -> Table {
    let mut c = BabelClient::connect(sock, Duration::from_secs(5))
        .await
        .unwrap();
    c.dump_table().await.unwrap()
}

/// Two babelds (our configuration, hello `hello`, network 2001:db8::/32)
/// in namespaces `ns[0]` and `ns[1]` linked by `t0`, each announcing
/// 2001:db8:{1,2}::/48 from its loopback; their files in a new directory
/// named after `tag`, returned last.
fn two_babelds(
    tag: &str,
    ns: [&str; 2],
    hello: u32,
) -> (Lab, Vec<BabelConfig>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.as_path();
    let network = Prefix::from_ipv6("2001:db8::".parse().unwrap(), 32).unwrap();
    let mut lab = Lab::new();
    lab.add_ns(ns[0]);
    lab.add_ns(ns[1]);
    lab.link(ns[0], &[], ns[1], &[], "t0");
    let mut configs = Vec::new();
    for (ns, n) in [(ns[0], 1u8), (ns[1], 2)] {
        lab.sh(ns, &format!("ip addr add 2001:db8:{n}::1/48 dev lo"));
        let c = config(dir, n, network, hello);
        let mut argv = vec!["babeld".to_string()];
        argv.extend(c.args());
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        lab.spawn(ns, &argv, &dir.join(format!("stdout{n}.log")));
        configs.push(c);
    }
    (lab, configs, dir.to_owned())
}

#[test]
fn neighbours_routes_and_draining() {
    let (lab, configs, dir) = two_babelds("re6st-babel", ["a", "b"], 1);
    let network = configs[0].network;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a_sock, b_sock) = (
        configs[0].control_socket.clone(),
        configs[1].control_socket.clone(),
    );
    // babeld's monitor stream on A, reduced to "a neighbour came or went".
    let mut links = rt.block_on(async { monitor::spawn(a_sock.clone(), vec![]) });
    let deadline = Instant::now() + Duration::from_secs(30);
    let b_prefix = Prefix::from_subnet("2/16").unwrap();
    // A learns B's subnet, from B itself (refmetric 0), over t0: HMAC-signed
    // hellos with the same key on both sides.
    loop {
        let ready = a_sock.exists() && b_sock.exists() && {
            let t = rt.block_on(table(&a_sock));
            let by = t.by_neighbour(&network);
            t.reachable(&network).contains(&b_prefix)
                && by.iter().any(|((i, _), (own, via))| {
                    i == "t0" && *own == Some(b_prefix) && via.contains(&b_prefix)
                })
                && t.routes_through(&network, "t0") == 1
        };
        if ready {
            break;
        }
        let log = std::fs::read_to_string(dir.join("babeld1.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "A never learned B's route; babeld log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The kernel has the route too.
    assert!(lab
        .sh("a", "ip -6 route show 2001:db8:2::/48")
        .contains("t0"));
    assert!(rt.block_on(async {
        let mut c = BabelClient::connect(&a_sock, Duration::from_secs(5))
            .await
            .unwrap();
        c.request("no-such-directive").await.is_err()
    }));
    // Drain t0 on A as the node does, by silencing A's babel there: the
    // link becomes expensive from both ends (B's estimate of A's link
    // quality falls, and its IHUs tell A), and routes leave it, while A's
    // babeld is never reconfigured: B stays its one neighbour there (a
    // re-created interface leaves babeld 1.12 with a second, stale entry
    // for B pointing at the freed interface).
    let neighbours_on_t0 = |sock: &std::path::Path| {
        rt.block_on(table(sock))
            .neighbours()
            .filter(|n| n.interface == "t0")
            .map(|n| n.address)
            .collect::<Vec<_>>()
    };
    let a_neighbours = neighbours_on_t0(&a_sock);
    assert_eq!(a_neighbours.len(), 1, "{a_neighbours:?}");
    lab.run_in("a", || handover::mute("t0", true)).unwrap();
    let drain_start = Instant::now();
    let deadline = drain_start + Duration::from_secs(30);
    let mut seen_by_b = None;
    loop {
        let t = rt.block_on(table(&b_sock));
        if seen_by_b.is_none()
            && t.neighbours()
                .any(|n| n.interface == "t0" && n.rxcost >= 4096)
        {
            seen_by_b = Some(drain_start.elapsed());
        }
        let a = rt.block_on(table(&a_sock));
        if seen_by_b.is_some()
            && a.neighbours()
                .any(|n| n.interface == "t0" && n.cost >= 4096)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the silenced link never became expensive from both ends (B: {seen_by_b:?})"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "silenced: B's cost of A past 4096 after {:?}, A's own after {:?}",
        seen_by_b.unwrap(),
        drain_start.elapsed()
    );
    assert_eq!(neighbours_on_t0(&a_sock), a_neighbours);
    // Speaking again, the link is cheap again, still without a new
    // neighbour entry.
    lab.run_in("a", || handover::mute("t0", false)).unwrap();
    let undo = Instant::now();
    loop {
        let a = rt.block_on(table(&a_sock));
        if a.neighbours().any(|n| n.interface == "t0" && n.cost < 200) {
            break;
        }
        assert!(
            undo.elapsed() < Duration::from_secs(30),
            "the link stayed expensive"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("unsilenced: cheap again after {:?}", undo.elapsed());
    assert_eq!(neighbours_on_t0(&a_sock), a_neighbours);
    // Garbage requests don't break the connection or babeld.
    rt.block_on(async {
        let mut c = BabelClient::connect(&b_sock, Duration::from_secs(5))
            .await
            .unwrap();
        let _ = c.request("\u{1}\u{2}garbage").await;
        assert!(c
            .dump()
            .await
            .unwrap()
            .iter()
            .any(|l| matches!(l, Line::Neighbour { .. })));
    });
    // The monitor told of B's arrival; B going away is told too.
    let link_change =
        |rt: &tokio::runtime::Runtime, links: &mut tokio::sync::mpsc::Receiver<MonitorEvent>| {
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(30), async {
                    loop {
                        match links.recv().await {
                            Some(MonitorEvent::NeighbourUsable(_)) => continue,
                            other => return other,
                        }
                    }
                })
                .await
            })
        };
    assert_eq!(
        link_change(&rt, &mut links),
        Ok(Some(MonitorEvent::LinksChanged)),
        "B's arrival"
    );
    rt.block_on(async { tokio::time::sleep(Duration::from_secs(2)).await });
    while links.try_recv().is_ok() {}
    lab.sh("b", "ip link set t0 down");
    assert_eq!(
        link_change(&rt, &mut links),
        Ok(Some(MonitorEvent::LinksChanged)),
        "B's departure"
    );
    drop(lab);
    std::fs::remove_dir_all(&dir).ok();
}

/// What the node's table exchange (`core::babel`) relies on: with HMAC,
/// babeld drops the first packets of a new neighbour (challenge), its
/// request for routes among them, so routes would wait for the next
/// periodic full update (here 4 x 60 s); an IPv4 address change on the
/// interface, once the monitor says the neighbour is usable, makes
/// babeld ask for full tables and send its own at once.
#[test]
fn an_ipv4_change_makes_babeld_exchange_tables_at_once() {
    let (lab, configs, dir) = two_babelds("re6st-babel-x", ["xa", "xb"], 60);
    let network = configs[0].network;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let socks = [
        configs[0].control_socket.clone(),
        configs[1].control_socket.clone(),
    ];
    let mut events = rt.block_on(async { monitor::spawn(socks[0].clone(), vec![]) });
    // Hellos every second (the node's tunnels), full updates every 240 s.
    let usable = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match events.recv().await {
                    Some(MonitorEvent::NeighbourUsable(i)) => return Some(i),
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .await
    });
    assert_eq!(usable, Ok(Some("t0".to_string())), "B usable on t0");
    let learned = |rt: &tokio::runtime::Runtime, sock: &std::path::Path, p: &str| {
        let t = rt.block_on(table(sock));
        t.reachable(&network)
            .contains(&Prefix::from_subnet(p).unwrap())
    };
    assert!(
        !learned(&rt, &socks[0], "2/16") && !learned(&rt, &socks[1], "1/16"),
        "routes came before the exchange: the test shows nothing"
    );
    lab.sh("xa", "ip addr add 169.254.36.1/32 dev t0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(learned(&rt, &socks[0], "2/16") && learned(&rt, &socks[1], "1/16")) {
        assert!(
            Instant::now() < deadline,
            "no table exchange within 10 s of the address change"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(lab);
    std::fs::remove_dir_all(&dir).ok();
}
