//! Make-before-break for a tunnel being drained.
//!
//! Stock babeld applies new interface parameters only by re-creating the
//! interface, which drops every route through it at once; where babel has
//! no feasible alternative yet, traffic would stop until one is found. So
//! before that, the kernel gets a less preferred copy of each of those
//! routes (our own protocol number, a high metric): traffic keeps flowing
//! through the still-working tunnel until babeld installs better routes,
//! and the copies go when the tunnel closes or the drain is undone.

use crate::kernel::netlink::Netlink;
use crate::kernel::op::PROTO_BABEL;
use crate::kernel::{NetOp, Route};

/// Our routing protocol number in the kernel (not babeld's 42).
const PROTO: u8 = 201;
/// Below babeld's routes (kernel metric 1024 for IPv6 by default).
const METRIC: u32 = 65000;

/// Copies of babeld's routes (a listing of `iface`'s routes of babeld's
/// protocol) onto `iface`, below them. Unreachable routes carry no
/// traffic: not copied.
fn copies(iface: &str, listing: Vec<Route>) -> Vec<NetOp> {
    listing
        .into_iter()
        .filter(|r| r.via.is_some() && r.kind == crate::kernel::RouteKind::Unicast)
        .map(|r| {
            NetOp::RouteAdd(Route {
                dev: Some(iface.into()),
                proto: PROTO,
                metric: Some(METRIC),
                onlink: false,
                pref_src: None,
                ..r
            })
        })
        .collect()
}

/// `iface`'s routes of protocol `proto`, both families.
fn listing(nl: &mut Netlink, iface: &str, proto: u8) -> Vec<Route> {
    let mut all = Vec::new();
    for v4 in [false, true] {
        all.extend(nl.routes(v4, Some(proto), Some(iface)).unwrap_or_default());
    }
    all
}

/// Copies babeld's routes through `iface` (before babeld drops them).
pub fn hold(iface: &str) {
    let Ok(mut nl) = Netlink::open() else { return };
    for op in copies(iface, listing(&mut nl, iface, PROTO_BABEL)) {
        let _ = nl.apply(&op);
    }
}

/// Removes the copies on `iface`.
pub fn release(iface: &str) {
    let Ok(mut nl) = Netlink::open() else { return };
    for r in listing(&mut nl, iface, PROTO) {
        let _ = nl.apply(&NetOp::RouteDel(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_routes_below_babel() {
        let ip = |s: &str| s.parse().unwrap();
        let mut sourced = Route::via(ip("2001:db8:42:5::"), 64, Some(ip("fe80::1")), PROTO_BABEL);
        sourced.src = Some((ip("2001:db8:42::"), 48));
        sourced.metric = Some(1024);
        sourced.dev = Some("re6stnet3".into());
        let v4 = Route::via(ip("198.18.9.0"), 24, Some(ip("fe80::3")), PROTO_BABEL);
        let unreachable = Route::unreachable(ip("2001:db8:42:6::"), 64, PROTO_BABEL);
        let ops: Vec<String> = copies("re6stnet3", vec![sourced, v4, unreachable])
            .iter()
            .map(|o| o.to_string())
            .collect();
        assert_eq!(
            ops,
            [
                "ip -6 route add 2001:db8:42:5::/64 from 2001:db8:42::/48 via fe80::1 dev re6stnet3 proto 201 metric 65000",
                "ip -4 route add 198.18.9.0/24 via inet6 fe80::3 dev re6stnet3 proto 201 metric 65000",
            ]
        );
    }
}
