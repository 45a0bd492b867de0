//! Names of simulated nodes: node `i` has prefix `i/16` (as in the tunnel
//! manager's own toy test) and, unless NATed, a public IPv4 address in
//! 198.18.0.0/15 with an OpenVPN server on UDP and on TCP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use re6st_proto::prefix::Prefix;

/// Prefix length of every node: enough for 65,535 nodes.
pub const PREFIX_LEN: u8 = 16;

/// Most nodes a simulation can have.
pub const MAX_NODES: u32 = (1 << PREFIX_LEN) - 1;

/// The registry runs beside node 0, as upstream's registry beside its node.
pub const REGISTRY: u32 = 0;

pub fn prefix(i: u32) -> Prefix {
    // `i` < 2^16 by construction (checked when the simulation is built).
    Prefix::new(u128::from(i), PREFIX_LEN).expect("node index fits the prefix length")
}

pub fn index(p: &Prefix) -> Option<u32> {
    (p.len() == PREFIX_LEN)
        .then(|| u32::try_from(p.value()).ok())
        .flatten()
}

pub fn ipv4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i)
}

/// The address list a reachable node announces (peer message code 1).
pub fn address_list(i: u32) -> String {
    let ip = ipv4(i);
    format!("{ip},1194,udp;{ip},1194,tcp")
}

/// Node `i`'s address on the overlay, where its peer protocol listens.
pub fn overlay(network: &Prefix, i: u32) -> SocketAddr {
    let ip = re6st_proto::prefix::node_address(network, &prefix(i))
        .expect("a /16 node prefix fits a /32 network");
    SocketAddr::new(IpAddr::V6(ip), re6st_proto::PEER_PORT)
}

/// The node an overlay address belongs to.
pub fn node_of_overlay(network: &Prefix, ip: IpAddr) -> Option<u32> {
    let IpAddr::V6(ip) = ip else { return None };
    let bits = Prefix::from_ipv6(ip, network.len() + PREFIX_LEN).ok()?;
    if !bits.starts_with(network) {
        return None;
    }
    index(&bits.suffix_from(network.len()))
}

/// The node an announced IPv4 address belongs to.
pub fn node_of_ip(ip: std::net::IpAddr) -> Option<u32> {
    match ip {
        std::net::IpAddr::V4(v4) => u32::from(v4).checked_sub(u32::from(ipv4(0))),
        std::net::IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for i in [0, 1, 250, 9999, MAX_NODES - 1] {
            assert_eq!(index(&prefix(i)), Some(i));
            let a = re6st_proto::address::parse_list(&address_list(i));
            assert!(a.rejected.is_empty());
            assert_eq!(node_of_ip(a.addresses[0].ip), Some(i));
        }
        assert!(prefix(1) < prefix(2), "prefix order is index order");
        let network = Prefix::from_ipv6("2001:db8::".parse().unwrap(), 32).unwrap();
        for i in [0, 1, 9999, MAX_NODES - 1] {
            assert_eq!(
                node_of_overlay(&network, overlay(&network, i).ip()),
                Some(i)
            );
        }
        let other = Prefix::from_ipv6("2001:db9::".parse().unwrap(), 32).unwrap();
        assert_eq!(node_of_overlay(&network, overlay(&other, 5).ip()), None);
    }
}
