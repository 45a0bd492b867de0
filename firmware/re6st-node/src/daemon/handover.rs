//! Make-before-break for a tunnel being drained.
//!
//! Stock babeld applies new interface parameters only by re-creating the
//! interface, which drops every route through it at once; where babel has
//! no feasible alternative yet, traffic would stop until one is found. So
//! before that, the kernel gets a less preferred copy of each of those
//! routes (our own protocol number, a high metric): traffic keeps flowing
//! through the still-working tunnel until babeld installs better routes,
//! and the copies go when the tunnel closes or the drain is undone.

use std::process::Command;

/// babeld's routing protocol number (names may be missing on a router).
const BABEL: &str = "42";
/// Our routing protocol number in the kernel (not babeld's 42).
const PROTO: &str = "201";
/// Below babeld's routes (kernel metric 1024 for IPv6 by default).
const METRIC: &str = "65000";

/// `ip route add` arguments copying the routes of an `ip route show dev
/// IFACE proto babel` listing onto `iface`.
fn copies(family: &str, iface: &str, listing: &str) -> Vec<Vec<String>> {
    listing
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let dest = *words.first()?;
            let after = |key: &str| {
                words
                    .iter()
                    .position(|w| *w == key)
                    .and_then(|i| words.get(i + 1))
                    .copied()
            };
            // IPv4 through an IPv6 next hop: `via inet6 ADDR`.
            let mut via = vec![after("via")?];
            if via[0] == "inet6" {
                via.push(after("inet6")?);
            }
            let mut args: Vec<String> = [family, "route", "add", dest].map(String::from).to_vec();
            if let Some(src) = after("from") {
                args.extend(["from".into(), src.into()]);
            }
            args.push("via".into());
            args.extend(via.into_iter().map(String::from));
            args.extend(["dev", iface, "proto", PROTO, "metric", METRIC].map(String::from));
            Some(args)
        })
        .collect()
}

/// Copies babeld's routes through `iface` (before babeld drops them).
pub fn hold(iface: &str) {
    for family in ["-6", "-4"] {
        let Ok(out) = Command::new("ip")
            .args([family, "route", "show", "dev", iface, "proto", BABEL])
            .output()
        else {
            continue;
        };
        for args in copies(family, iface, &String::from_utf8_lossy(&out.stdout)) {
            let _ = Command::new("ip").args(&args).output();
        }
    }
}

/// Removes the copies on `iface`.
pub fn release(iface: &str) {
    for family in ["-6", "-4"] {
        let _ = Command::new("ip")
            .args([family, "route", "flush", "dev", iface, "proto", PROTO])
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::copies;

    #[test]
    fn copies_routes_below_babel() {
        let listing =
            "2001:db8:42:5::/64 from 2001:db8:42::/48 via fe80::1 metric 1024 pref medium\n\
                       2001:db8:42:6::/64 via fe80::2 metric 1024 pref medium\n\
                       198.18.9.0/24 via inet6 fe80::3 metric 1024\n\
                       garbage\n";
        assert_eq!(
            copies("-6", "re6stnet3", listing),
            vec![
                "-6 route add 2001:db8:42:5::/64 from 2001:db8:42::/48 via fe80::1 dev re6stnet3 proto 201 metric 65000",
                "-6 route add 2001:db8:42:6::/64 via fe80::2 dev re6stnet3 proto 201 metric 65000",
                "-6 route add 198.18.9.0/24 via inet6 fe80::3 dev re6stnet3 proto 201 metric 65000",
            ]
            .into_iter()
            .map(|l| l.split(' ').map(String::from).collect::<Vec<_>>())
            .collect::<Vec<_>>()
        );
    }
}
