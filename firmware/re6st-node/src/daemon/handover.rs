//! Make-before-break for a tunnel being drained.
//!
//! Stock babeld 1.12 cannot change an interface's parameters at run time
//! but by re-creating it (`flush interface`), and that is unsafe while the
//! interface has neighbours: babeld 1.12 frees the interface and keeps the
//! neighbours pointing at it (fixed in babeld 1.14, commit 82fbac5), which
//! ends in babeld spinning on "add_hmac: no link-local address." or in a
//! malloc abort. So a drain never touches babeld: the node deletes the
//! tap's multicast route, and babeld's hellos, IHUs and updates there
//! stop getting out (sending fails at once; data keeps flowing). The
//! peer's link-quality estimate of us then doubles its cost with each
//! lost hello (infinite after 12), its IHUs carry that back to our
//! babeld, and routes move away from both ends, while the tunnel still
//! carries traffic.
//!
//! Where babel has no feasible alternative yet, it drops the route; so
//! before the drain, the kernel gets a less preferred copy of each route
//! through the tunnel (our own protocol number, a high metric): traffic
//! keeps flowing through the still-working tunnel until babeld installs
//! better routes, and the copies go when the tunnel closes or after the
//! drain is undone.

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
    delete_routes(iface, PROTO);
}

/// Removes babeld's routes through `iface`, whose tunnel closed (see
/// `Effect::StopTunnel`).
pub fn forget_babel_routes(iface: &str) {
    delete_routes(iface, PROTO_BABEL);
}

fn delete_routes(iface: &str, proto: u8) {
    let Ok(mut nl) = Netlink::open() else { return };
    for r in listing(&mut nl, iface, proto) {
        let _ = nl.apply(&NetOp::RouteDel(r));
    }
}

/// Silences babel on `iface` (`mute`), or lets it speak again: deletes or
/// restores the interface's multicast route. Doing either twice is no
/// error.
pub fn mute(iface: &str, mute: bool) -> std::io::Result<()> {
    let route = Route::multicast(iface);
    let (op, done) = if mute {
        (NetOp::RouteDel(route), libc::ESRCH)
    } else {
        (NetOp::RouteAdd(route), libc::EEXIST)
    };
    match Netlink::open()?.apply(&op) {
        Err(e) if e.raw_os_error() == Some(done) => Ok(()),
        r => r,
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
