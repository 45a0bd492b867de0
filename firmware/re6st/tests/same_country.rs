//! The network's `same_country` rule: nodes of a listed country tunnel
//! only at home, the others never into it. (Its own test binary: the
//! registry reads GeoIP from the GEOIP2_MMDB environment variable.)
//!
//! As with upstream, the registry hands out bootstrap peers from its own
//! node's routes only, and a node of unknown country may tunnel with
//! anyone: here the registry's node is in no country the GeoIP knows, so
//! that nodes on both sides of the border join through it, learn of the
//! nodes across (through its routes) and must refuse them.

use std::time::Duration;

use re6st_testkit::overlay::{Overlay, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

#[test]
fn same_country_keeps_tunnels_inside() {
    // Node n is at 198.18.{n+1}.2: node 0 (the registry's) is in no known
    // country, nodes 1 and 2 are in France, 3 and 4 in Germany, 5 in
    // Japan; France keeps its tunnels at home.
    let country = [
        None,
        Some("FR"),
        Some("FR"),
        Some("DE"),
        Some("DE"),
        Some("JP"),
    ];
    let db: Vec<(std::net::Ipv4Addr, u8, &str, &str)> = country
        .iter()
        .enumerate()
        .filter_map(|(n, c)| {
            let net = format!("198.18.{}.0", n + 1).parse().unwrap();
            c.map(|c| (net, 24, c, if c == "JP" { "AS" } else { "EU" }))
        })
        .collect();
    let mmdb = std::env::temp_dir().join(format!("re6st-geoip-{}.mmdb", std::process::id()));
    std::fs::write(&mmdb, re6st_testkit::mmdb::build(&db)).unwrap();
    // Read by the registry we start (this test is alone in its process).
    std::env::set_var("GEOIP2_MMDB", &mmdb);
    let o = Overlay::start_with(
        BIN.as_ref(),
        Registry::Ours,
        6,
        None,
        // Tunnels rewired every 10 s: each node picks new peers among all
        // those it has routes to, on both sides, many times over.
        &["--same-country", "FR", "--tunnel-refresh", "10"],
        &|_| {},
        // One node says where it is; the others ask the registry.
        &|n| {
            if n == 1 {
                vec!["--country".into(), "FR".into()]
            } else {
                vec![]
            }
        },
    );
    // Every node reaches every other, through node 0 across the border.
    o.all_pairs_reach(Duration::from_secs(120));
    let subnet = |m: usize| format!("{}/64", o.addrs[m].strip_suffix('1').unwrap());
    let french: Vec<String> = (0..6)
        .filter(|m| country[*m] == Some("FR"))
        .map(subnet)
        .collect();
    // Each node's tunnels, read every 5 s over 6 rewirings.
    let mut had_peers = [false; 6];
    for _ in 0..12 {
        for n in 0..6usize {
            let s = o
                .status(n as u32)
                .unwrap_or_else(|| panic!("node{n} does not answer ctl status"));
            assert_eq!(s["country"].as_str(), country[n], "{s}");
            assert_eq!(s["same_country"], serde_json::json!(["FR"]), "{s}");
            let peers: Vec<String> = s["tunnels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["peer"].as_str().unwrap())
                .chain(
                    s["served"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p.as_str().unwrap()),
                )
                .map(str::to_owned)
                .collect();
            had_peers[n] |= !peers.is_empty();
            for p in &peers {
                let allowed = match country[n] {
                    // Unknown: anyone.
                    None => true,
                    // At home, or with the node of unknown country.
                    Some("FR") => french.contains(p) || *p == subnet(0),
                    // Abroad: never into France.
                    Some(_) => !french.contains(p),
                };
                assert!(
                    allowed,
                    "node{n} ({:?}) has a tunnel with {p}: {s}",
                    country[n]
                );
            }
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    // Both sides of the border were checked on real tunnels.
    assert_eq!(had_peers, [true; 6], "nodes without any tunnel");
    o.finish();
    std::fs::remove_file(&mmdb).ok();
}
