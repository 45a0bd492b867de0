//! Does the kernel hold the routes babeld believes it installed?
//!
//! A babeld that is restarted is killed, so that its routes keep carrying
//! traffic until the new one has converged. The new one then finds those
//! routes in its way: stock babeld takes the kernel's "exists" answer for
//! success and believes its own route installed while the kernel keeps
//! the old one, through a neighbour that may be long gone; its later
//! attempts to remove what it believes installed fail ("No such
//! process"). The daemon compares both views now and then and, where a
//! difference lasts, puts babeld's route into the kernel (`ip route
//! replace`), which is what babeld meant to do.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::control::Route;
#[cfg(test)]
use super::control::INFINITY;

pub type Net = (IpAddr, u8);

/// A forwarding route of ours in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub via: Option<IpAddr>,
    pub dev: String,
    pub metric: Option<u32>,
}

fn parse_net(s: &str) -> Option<Net> {
    match s.split_once('/') {
        Some((ip, len)) => Some((ip.parse().ok()?, len.parse().ok()?)),
        None => {
            let ip: IpAddr = s.parse().ok()?;
            Some((ip, if ip.is_ipv4() { 32 } else { 128 }))
        }
    }
}

fn any(ip: IpAddr) -> Net {
    match ip {
        IpAddr::V4(_) => ("0.0.0.0".parse().unwrap(), 0),
        IpAddr::V6(_) => ("::".parse().unwrap(), 0),
    }
}

/// Parses `ip route show proto 42` lines: the forwarding routes by
/// (destination, source), not the unreachable ones babeld installs for
/// retractions.
pub fn kernel_routes(listing: &str) -> BTreeMap<(Net, Net), KernelRoute> {
    listing
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |key: &str| {
                let i = words.iter().position(|w| *w == key)?;
                words.get(i + 1).copied()
            };
            let dest = parse_net(words.first()?)?;
            let from = match after("from") {
                Some(f) => parse_net(f)?,
                None => any(dest.0),
            };
            let via = match after("via") {
                Some("inet6") => Some(after("inet6")?.parse().ok()?),
                Some(v) => Some(v.parse().ok()?),
                None => None,
            };
            let route = KernelRoute {
                via,
                dev: after("dev")?.to_owned(),
                metric: after("metric").and_then(|m| m.parse().ok()),
            };
            Some(((dest, from), route))
        })
        .collect()
}

/// Remembers what differed at the last comparison.
#[derive(Debug, Default)]
pub struct KernelCheck {
    suspects: BTreeSet<(Net, Net, IpAddr, String)>,
}

impl KernelCheck {
    /// Compares babeld's installed routes with the kernel's; returns the
    /// `ip` commands that put babeld's routes in place where the kernel
    /// differed now and at the previous comparison (once is not enough:
    /// babeld may have been changing them at that very moment).
    /// `pref_src` is the source address babeld installs with, per family.
    pub fn compare<'a>(
        &mut self,
        babel: impl Iterator<Item = &'a Route>,
        kernel: &BTreeMap<(Net, Net), KernelRoute>,
        pref_src: &dyn Fn(IpAddr) -> Option<IpAddr>,
    ) -> Vec<Vec<String>> {
        let differing: BTreeMap<_, Option<u32>> = babel
            .filter(|r| r.usable())
            .filter_map(|r| {
                let k = kernel.get(&(r.prefix, r.from));
                let same = k.is_some_and(|k| k.dev == r.interface && k.via == Some(r.via));
                let key = (r.prefix, r.from, r.via, r.interface.clone());
                (!same).then(|| (key, k.and_then(|k| k.metric)))
            })
            .collect();
        let mut commands = Vec::new();
        for (key, metric) in &differing {
            if !self.suspects.contains(key) {
                continue;
            }
            let ((dest, len), (src, src_len), via, dev) = key;
            let v4 = dest.is_ipv4();
            let mut a: Vec<String> = vec![
                if v4 { "-4" } else { "-6" }.into(),
                "route".into(),
                "replace".into(),
                format!("{dest}/{len}"),
            ];
            if *src_len != 0 {
                a.extend(["from".into(), format!("{src}/{src_len}")]);
            }
            a.push("via".into());
            if v4 && via.is_ipv6() {
                a.push("inet6".into());
            }
            a.push(via.to_string());
            a.extend(["dev".into(), dev.clone(), "proto".into(), "42".into()]);
            let metric = metric.unwrap_or(if v4 { 0 } else { 1024 });
            a.extend(["metric".into(), metric.to_string(), "onlink".into()]);
            if let Some(s) = pref_src(*dest) {
                a.extend(["src".into(), s.to_string()]);
            }
            commands.push(a);
        }
        self.suspects = differing.into_keys().collect();
        commands
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, via: &str, iface: &str, installed: bool, metric: u32) -> Route {
        Route {
            key: format!("{prefix}{iface}"),
            prefix: parse_net(prefix).unwrap(),
            from: ("::".parse().unwrap(), 0),
            installed,
            router_id: "id".into(),
            metric,
            refmetric: 0,
            via: via.parse().unwrap(),
            interface: iface.into(),
        }
    }

    #[test]
    fn reads_forwarding_routes_only() {
        let listing = "2001:db8:42:1::/64 from 2001:db8:42::/48 via fe80::1 dev re6stnet-tcp metric 1024 onlink pref medium\n\
                       unreachable 2001:db8:42:3::/64 dev lo metric 4294967295 pref medium\n\
                       198.18.9.0/24 via inet6 fe80::3 dev re6stnet1\n\
                       garbage\n";
        let k = kernel_routes(listing);
        assert_eq!(k.len(), 2, "{k:?}");
        let r = &k[&(
            parse_net("2001:db8:42:1::/64").unwrap(),
            parse_net("2001:db8:42::/48").unwrap(),
        )];
        assert_eq!(
            r,
            &KernelRoute {
                via: Some("fe80::1".parse().unwrap()),
                dev: "re6stnet-tcp".into(),
                metric: Some(1024)
            }
        );
        let r = &k[&(
            parse_net("198.18.9.0/24").unwrap(),
            parse_net("0.0.0.0/0").unwrap(),
        )];
        assert_eq!(r.via, Some("fe80::3".parse().unwrap()));
        assert_eq!(r.metric, None);
    }

    #[test]
    fn a_lasting_difference_is_repaired_with_babels_route() {
        // The kernel kept a killed babeld's route to :2 through another
        // neighbour, and lost the one to :3.
        let kernel = kernel_routes(
            "2001:db8:42:1::/64 via fe80::1 dev re6stnet1 proto babel metric 1024\n\
             2001:db8:42:2::/64 via fe80::9 dev re6stnet2 proto babel metric 1024\n",
        );
        let babel = [
            route("2001:db8:42:1::/64", "fe80::1", "re6stnet1", true, 96),
            route("2001:db8:42:2::/64", "fe80::2", "re6stnet-tcp", true, 192),
            route("2001:db8:42:3::/64", "fe80::3", "re6stnet-tcp", true, 96),
            // Not installed, or retracted: nothing to expect.
            route("2001:db8:42:4::/64", "fe80::4", "re6stnet2", false, 96),
            route("2001:db8:42:5::/64", "fe80::4", "re6stnet2", true, INFINITY),
        ];
        let src = |_: IpAddr| Some("2001:db8:42:7::1".parse().unwrap());
        let mut check = KernelCheck::default();
        assert!(
            check.compare(babel.iter(), &kernel, &src).is_empty(),
            "once"
        );
        let fixes: Vec<String> = check
            .compare(babel.iter(), &kernel, &src)
            .iter()
            .map(|a| a.join(" "))
            .collect();
        assert_eq!(
            fixes,
            [
                "-6 route replace 2001:db8:42:2::/64 via fe80::2 dev re6stnet-tcp proto 42 metric 1024 onlink src 2001:db8:42:7::1",
                "-6 route replace 2001:db8:42:3::/64 via fe80::3 dev re6stnet-tcp proto 42 metric 1024 onlink src 2001:db8:42:7::1",
            ]
        );
        // Once in line, nothing more to do.
        let kernel = kernel_routes(
            "2001:db8:42:1::/64 via fe80::1 dev re6stnet1\n\
             2001:db8:42:2::/64 via fe80::2 dev re6stnet-tcp\n\
             2001:db8:42:3::/64 via fe80::3 dev re6stnet-tcp\n",
        );
        assert!(check.compare(babel.iter(), &kernel, &src).is_empty());
        assert!(check.compare(babel.iter(), &kernel, &src).is_empty());
    }
}
