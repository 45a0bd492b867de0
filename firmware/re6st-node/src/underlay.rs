//! `--remote-gateway`: each client tunnel's peer address is reached through
//! one of the given gateways, in turn (a host with several uplinks spreads
//! its tunnels over them). Sans-IO: the route operations to carry out.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::kernel::op::{NetOp, Route, PROTO_BOOT};

#[derive(Debug, Default)]
pub struct RemoteGateways {
    gateways: Vec<Ipv4Addr>,
    next: usize,
    /// Peer address → (gateway, tunnels using it).
    routes: BTreeMap<Ipv4Addr, (Ipv4Addr, usize)>,
}

/// A `--remote-gateway` that cannot carry tunnels.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("--remote-gateway {0:?}: not an IPv4 address")]
    NotIpv4(String),
    #[error("--remote-gateway {gw}: unreachable ({source})")]
    Unreachable {
        gw: Ipv4Addr,
        source: std::io::Error,
    },
    /// How the kernel routes it instead.
    #[error(
        "--remote-gateway {gw}: not on a directly connected network (the kernel routes it {route})"
    )]
    NotOnLink { gw: Ipv4Addr, route: String },
}

impl RemoteGateways {
    pub fn new(gateways: &[String]) -> Result<RemoteGateways, GatewayError> {
        let gateways = gateways
            .iter()
            .map(|g| g.parse().map_err(|_| GatewayError::NotIpv4(g.clone())))
            .collect::<Result<_, _>>()?;
        Ok(RemoteGateways {
            gateways,
            ..Default::default()
        })
    }

    pub fn gateways(&self) -> &[Ipv4Addr] {
        &self.gateways
    }

    /// A tunnel to `peer` starts: the route to add, if any (IPv4 peers
    /// only, as upstream; one route per address, shared by its tunnels).
    pub fn add(&mut self, peer: IpAddr) -> Option<NetOp> {
        let IpAddr::V4(peer) = peer else { return None };
        if self.gateways.is_empty() {
            return None;
        }
        if let Some((_, users)) = self.routes.get_mut(&peer) {
            *users += 1;
            return None;
        }
        let gw = self.gateways[self.next % self.gateways.len()];
        self.next += 1;
        self.routes.insert(peer, (gw, 1));
        Some(NetOp::RouteAdd(route(peer, gw)))
    }

    /// A tunnel to `peer` ended: the route to delete, if it was the last.
    pub fn remove(&mut self, peer: IpAddr) -> Option<NetOp> {
        let IpAddr::V4(peer) = peer else { return None };
        let (gw, users) = self.routes.get_mut(&peer)?;
        *users -= 1;
        if *users > 0 {
            return None;
        }
        let gw = *gw;
        self.routes.remove(&peer);
        Some(NetOp::RouteDel(route(peer, gw)))
    }

    /// Everything to delete on exit.
    pub fn clear(&mut self) -> Vec<NetOp> {
        std::mem::take(&mut self.routes)
            .into_iter()
            .map(|(peer, (gw, _))| NetOp::RouteDel(route(peer, gw)))
            .collect()
    }
}

/// `ip -4 route add PEER/32 via GW`.
fn route(peer: Ipv4Addr, gw: Ipv4Addr) -> Route {
    Route::via(peer.into(), 32, Some(gw.into()), PROTO_BOOT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn round_robin_shared_routes() {
        let mut g = RemoteGateways::new(&["198.18.200.1".into(), "198.18.201.1".into()]).unwrap();
        assert_eq!(
            g.add(ip("198.18.3.2")).unwrap().to_string(),
            "ip -4 route add 198.18.3.2/32 via 198.18.200.1 proto 3"
        );
        assert_eq!(
            g.add(ip("198.18.4.2")).unwrap().to_string(),
            "ip -4 route add 198.18.4.2/32 via 198.18.201.1 proto 3"
        );
        // A second tunnel to the same address shares its route.
        assert_eq!(g.add(ip("198.18.3.2")), None);
        assert_eq!(g.remove(ip("198.18.3.2")), None);
        assert_eq!(
            g.remove(ip("198.18.3.2")).unwrap().to_string(),
            "ip -4 route del 198.18.3.2/32 via 198.18.200.1 proto 3"
        );
        assert_eq!(g.remove(ip("198.18.3.2")), None, "unknown now");
        assert_eq!(g.add(ip("2001:db8::1")), None, "IPv4 only");
        assert_eq!(g.clear().len(), 1);
        assert!(RemoteGateways::new(&["nope".into()]).is_err());
        assert_eq!(
            RemoteGateways::new(&[]).unwrap().add(ip("198.18.3.2")),
            None
        );
    }
}
