//! Does the kernel hold the routes babeld believes it installed?
//!
//! A babeld that is restarted is killed, so that its routes keep carrying
//! traffic until the new one has converged. The new one then finds those
//! routes in its way: stock babeld takes the kernel's "exists" answer for
//! success and believes its own route installed while the kernel keeps
//! the old one, through a neighbour that may be long gone; its later
//! attempts to remove what it believes installed fail ("No such
//! process"). The daemon compares both views now and then and, where a
//! difference lasts, puts babeld's route into the kernel (a route
//! replace), which is what babeld meant to do.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::control::Route;
#[cfg(test)]
use super::control::INFINITY;
use crate::kernel::op::PROTO_BABEL;
use crate::kernel::{self, NetOp, RouteKind};

pub type Net = (IpAddr, u8);

/// A forwarding route of ours in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub via: Option<IpAddr>,
    pub dev: String,
    pub metric: Option<u32>,
}

#[cfg(test)]
fn parse_net(s: &str) -> Option<Net> {
    let (ip, len) = s.split_once('/')?;
    Some((ip.parse().ok()?, len.parse().ok()?))
}

fn any(ip: IpAddr) -> Net {
    match ip {
        IpAddr::V4(_) => (IpAddr::from([0u8; 4]), 0),
        IpAddr::V6(_) => (IpAddr::from([0u8; 16]), 0),
    }
}

/// The forwarding routes of a listing (`ip route show proto 42`) by
/// (destination, source), not the unreachable ones babeld installs for
/// retractions.
pub fn kernel_routes(
    listing: impl IntoIterator<Item = kernel::Route>,
) -> BTreeMap<(Net, Net), KernelRoute> {
    listing
        .into_iter()
        .filter(|r| r.kind == RouteKind::Unicast)
        .filter_map(|r| {
            let route = KernelRoute {
                via: r.via,
                dev: r.dev?,
                metric: r.metric,
            };
            Some(((r.dst, r.src.unwrap_or(any(r.dst.0))), route))
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
    ) -> Vec<NetOp> {
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
            let (dest, src, via, dev) = key;
            let v4 = dest.0.is_ipv4();
            let mut r = kernel::Route::via(dest.0, dest.1, Some(*via), PROTO_BABEL);
            r.src = (src.1 != 0).then_some(*src);
            r.dev = Some(dev.clone());
            r.metric = Some(metric.unwrap_or(if v4 { 0 } else { 1024 }));
            r.onlink = true;
            r.pref_src = pref_src(dest.0);
            commands.push(NetOp::RouteReplace(r));
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

    /// A listed route of babeld's: DST [from SRC] via VIA dev DEV.
    fn listed(
        dst: &str,
        src: Option<&str>,
        via: &str,
        dev: &str,
        metric: Option<u32>,
    ) -> kernel::Route {
        let (ip, len) = parse_net(dst).unwrap();
        let mut r = kernel::Route::via(ip, len, Some(via.parse().unwrap()), PROTO_BABEL);
        r.src = src.map(|s| parse_net(s).unwrap());
        r.dev = Some(dev.into());
        r.metric = metric;
        r
    }

    #[test]
    fn reads_forwarding_routes_only() {
        let mut unreachable =
            kernel::Route::unreachable("2001:db8:42:3::".parse().unwrap(), 64, PROTO_BABEL);
        unreachable.dev = Some("lo".into());
        let k = kernel_routes([
            listed(
                "2001:db8:42:1::/64",
                Some("2001:db8:42::/48"),
                "fe80::1",
                "re6stnet-tcp",
                Some(1024),
            ),
            unreachable,
            listed("198.18.9.0/24", None, "fe80::3", "re6stnet1", None),
        ]);
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
        let kernel = kernel_routes([
            listed(
                "2001:db8:42:1::/64",
                None,
                "fe80::1",
                "re6stnet1",
                Some(1024),
            ),
            listed(
                "2001:db8:42:2::/64",
                None,
                "fe80::9",
                "re6stnet2",
                Some(1024),
            ),
        ]);
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
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            fixes,
            [
                "ip -6 route replace 2001:db8:42:2::/64 via fe80::2 dev re6stnet-tcp proto 42 metric 1024 onlink src 2001:db8:42:7::1",
                "ip -6 route replace 2001:db8:42:3::/64 via fe80::3 dev re6stnet-tcp proto 42 metric 1024 onlink src 2001:db8:42:7::1",
            ]
        );
        // Once in line, nothing more to do.
        let kernel = kernel_routes([
            listed("2001:db8:42:1::/64", None, "fe80::1", "re6stnet1", None),
            listed("2001:db8:42:2::/64", None, "fe80::2", "re6stnet-tcp", None),
            listed("2001:db8:42:3::/64", None, "fe80::3", "re6stnet-tcp", None),
        ]);
        assert!(check.compare(babel.iter(), &kernel, &src).is_empty());
        assert!(check.compare(babel.iter(), &kernel, &src).is_empty());
    }
}
