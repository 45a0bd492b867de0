//! The network's `same_country` rule: nodes of a listed country tunnel
//! only at home, the others never into it. (Its own test binary: the
//! registry reads GeoIP from the GEOIP2_MMDB environment variable.)
//!
//! As with upstream, the registry hands out bootstrap peers from its own
//! node's routes only, so nodes on the other side of the border than the
//! registry's node cannot be bootstrapped: here the registry's node is in
//! France, and the nodes abroad stay alone.

use std::time::Duration;

use re6st_testkit::netns::Lab;
use re6st_testkit::overlay::{Overlay, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

#[test]
fn same_country_keeps_tunnels_inside() {
    // Node n is at 198.18.{n+1}.2: nodes 0 and 1 are in France, 2 and 3 in
    // Germany, 4 in Japan; France keeps its tunnels at home.
    let country = ["FR", "FR", "DE", "DE", "JP"];
    let db: Vec<(std::net::Ipv4Addr, u8, &str, &str)> = country
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let net = format!("198.18.{}.0", n + 1).parse().unwrap();
            (net, 24, *c, if *c == "JP" { "AS" } else { "EU" })
        })
        .collect();
    let mmdb = std::env::temp_dir().join(format!("re6st-geoip-{}.mmdb", std::process::id()));
    std::fs::write(&mmdb, re6st_testkit::mmdb::build(&db)).unwrap();
    // Read by the registry we start (this test is alone in its process).
    std::env::set_var("GEOIP2_MMDB", &mmdb);
    let o = Overlay::start_with(
        BIN.as_ref(),
        Registry::Ours,
        5,
        None,
        &["--same-country", "FR"],
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
    let ok = Lab::wait_until(Duration::from_secs(120), || {
        o.lab
            .try_sh("n1", &format!("ping -6 -c1 -W1 {}", o.addrs[0]))
    });
    assert!(ok, "the French nodes do not reach each other\n{}", o.logs());
    // Let the nodes abroad try their bootstrap peers for a while.
    std::thread::sleep(Duration::from_secs(30));
    let subnet = |m: u32| format!("{}/64", o.addrs[m as usize].strip_suffix('1').unwrap());
    for n in 0..5u32 {
        let s = o.status(n).expect("status");
        assert_eq!(s["country"], country[n as usize], "{s}");
        assert_eq!(s["same_country"], serde_json::json!(["FR"]), "{s}");
        let peers: Vec<String> = s["tunnels"]
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
            .collect();
        let french = n < 2;
        for p in &peers {
            let peer_french = p == &subnet(0) || p == &subnet(1);
            assert_eq!(
                french, peer_french,
                "node{n} ({}) has a tunnel with {p}: {s}",
                country[n as usize]
            );
        }
        if french {
            assert!(!peers.is_empty(), "{s}");
        }
    }
    // And FR stays cut from the rest: no route across.
    assert!(!o
        .lab
        .try_sh("n2", &format!("ping -6 -c1 -W1 {}", o.addrs[1])));
    o.finish();
    std::fs::remove_file(&mmdb).ok();
}
