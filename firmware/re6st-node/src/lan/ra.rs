//! ICMPv6 router advertisements (RFC 4861, RDNSS from RFC 8106) for the
//! LAN behind a re6st router: pure encoding and the choice of the LAN
//! prefix. The kernel fills in the checksum of raw ICMPv6 sockets.

use std::net::Ipv6Addr;

use re6st_proto::prefix::Prefix;

pub const ROUTER_SOLICITATION: u8 = 133;
pub const ROUTER_ADVERTISEMENT: u8 = 134;

const OPT_SOURCE_LL: u8 = 1;
const OPT_PREFIX: u8 = 3;
const OPT_MTU: u8 = 5;
const OPT_RDNSS: u8 = 25;

/// What a router advertisement says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// The /64 for SLAAC.
    pub prefix: Ipv6Addr,
    /// Seconds LAN hosts may use us as their default router (0: stop).
    pub router_lifetime: u16,
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    pub rdnss: Vec<Ipv6Addr>,
    pub rdnss_lifetime: u32,
    pub mtu: Option<u32>,
    pub source_mac: Option<[u8; 6]>,
}

impl Advert {
    /// An advertisement with the lifetimes we use while running: router
    /// 30 min, prefix valid 1 h and preferred 30 min, each refreshed by
    /// every advertisement.
    pub fn new(prefix: Ipv6Addr) -> Advert {
        Advert {
            prefix,
            router_lifetime: 1800,
            valid_lifetime: 3600,
            preferred_lifetime: 1800,
            rdnss: Vec::new(),
            rdnss_lifetime: 1800,
            mtu: None,
            source_mac: None,
        }
    }

    /// The last advertisement before we stop: hosts drop us as a router
    /// and stop preferring our prefix (RFC 4861 6.2.5).
    pub fn farewell(&self) -> Advert {
        Advert {
            router_lifetime: 0,
            preferred_lifetime: 0,
            rdnss_lifetime: 0,
            ..self.clone()
        }
    }

    /// The ICMPv6 message, checksum left at zero.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![ROUTER_ADVERTISEMENT, 0, 0, 0];
        b.push(64); // hop limit for the hosts
        b.push(0); // no DHCPv6 (M, O clear)
        b.extend_from_slice(&self.router_lifetime.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes()); // reachable time: unspecified
        b.extend_from_slice(&0u32.to_be_bytes()); // retransmission timer: unspecified
        if let Some(mac) = self.source_mac {
            b.extend_from_slice(&[OPT_SOURCE_LL, 1]);
            b.extend_from_slice(&mac);
        }
        if let Some(mtu) = self.mtu {
            b.extend_from_slice(&[OPT_MTU, 1, 0, 0]);
            b.extend_from_slice(&mtu.to_be_bytes());
        }
        b.extend_from_slice(&[OPT_PREFIX, 4, 64, 0xc0]); // on-link, autonomous
        b.extend_from_slice(&self.valid_lifetime.to_be_bytes());
        b.extend_from_slice(&self.preferred_lifetime.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&self.prefix.octets());
        if !self.rdnss.is_empty() {
            b.extend_from_slice(&[OPT_RDNSS, (1 + 2 * self.rdnss.len()) as u8, 0, 0]);
            b.extend_from_slice(&self.rdnss_lifetime.to_be_bytes());
            for a in &self.rdnss {
                b.extend_from_slice(&a.octets());
            }
        }
        b
    }
}

/// Whether an ICMPv6 message is a router solicitation.
pub fn is_solicitation(msg: &[u8]) -> bool {
    msg.len() >= 8 && msg[0] == ROUTER_SOLICITATION && msg[1] == 0
}

/// The LAN's /64: the first /64 of the node's subnet (the one holding the
/// node's own address, which then lives on the LAN interface). Subnets
/// longer than /64 leave no room for SLAAC.
pub fn lan_prefix(subnet: &Prefix) -> Option<Ipv6Addr> {
    if subnet.len() > 64 {
        return None;
    }
    Some(subnet.to_ipv6())
}

/// Up to 3 RDNSS entries fit the size limit we keep advertisements to.
pub const MAX_RDNSS: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advert_layout() {
        let mut a = Advert::new("2001:db8:42:8000::".parse().unwrap());
        a.rdnss = vec!["2001:db8::53".parse().unwrap()];
        a.source_mac = Some([2, 0, 0, 0, 0, 1]);
        a.mtu = Some(1400);
        let b = a.encode();
        // Header 16, source LL 8, MTU 8, prefix 32, RDNSS 24.
        assert_eq!(b.len(), 16 + 8 + 8 + 32 + 24);
        assert_eq!(b[0], 134);
        assert_eq!(u16::from_be_bytes([b[6], b[7]]), 1800);
        let p = &b[32..64];
        assert_eq!(&p[..4], &[3, 4, 64, 0xc0]);
        assert_eq!(u32::from_be_bytes([p[4], p[5], p[6], p[7]]), 3600);
        assert_eq!(&p[16..], &a.prefix.octets());
        let r = &b[64..];
        assert_eq!(&r[..2], &[25, 3]);
        assert_eq!(&r[8..], &a.rdnss[0].octets());
        // Every option's length is in units of 8 bytes.
        let mut i = 16;
        while i < b.len() {
            let len = b[i + 1] as usize * 8;
            assert!(len > 0);
            i += len;
        }
        assert_eq!(i, b.len());
        let f = a.farewell().encode();
        assert_eq!(u16::from_be_bytes([f[6], f[7]]), 0);
    }

    #[test]
    fn lan_prefix_is_the_first_64() {
        let net = Prefix::from_ipv6("2001:db8:42::".parse().unwrap(), 48).unwrap();
        let sub = net
            .concat(&Prefix::from_subnet("32768/16").unwrap())
            .unwrap();
        assert_eq!(
            lan_prefix(&sub),
            Some("2001:db8:42:8000::".parse().unwrap())
        );
        let long = net.concat(&Prefix::from_subnet("1/20").unwrap()).unwrap();
        assert_eq!(lan_prefix(&long), None);
        assert!(is_solicitation(&[133, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!is_solicitation(&[133, 0, 0]));
        assert!(!is_solicitation(&[134, 0, 0, 0, 0, 0, 0, 0]));
    }
}
