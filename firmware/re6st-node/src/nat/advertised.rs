//! The addresses we announce to peers (answers to address queries), from
//! `--ip` and what we learn at run time.
//!
//! For IPv4, `--ip` is either fixed addresses, `upnp` (the default when no
//! IPv4 is given: ports mapped on the router's Internet Gateway Device), or
//! `any` (no mapping). Without a fixed address, the IP is the one our
//! peers see us from (their OpenVPN servers tell our clients), else the
//! gateway's external address. For IPv6, fixed addresses or, without
//! them, the one peers see. Ports are our servers' own, except those the
//! gateway mapped.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use re6st_proto::address::{format_list, Address, Proto};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipv4Source {
    Fixed(Vec<Ipv4Addr>),
    Upnp,
    Any,
}

/// Port mappings the gateway granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub external_ip: Ipv4Addr,
    /// (our port, protocol) → external port.
    pub ports: BTreeMap<(u16, Proto), u16>,
}

#[derive(Debug, Clone)]
pub struct Advertised {
    v4: Ipv4Source,
    v6: Vec<Ipv6Addr>,
    servers: Vec<(u16, Proto)>,
    country: Option<String>,
    mapping: Option<Mapping>,
    seen_v4: Option<Ipv4Addr>,
    seen_v6: Option<Ipv6Addr>,
}

/// An `--ip` value, or a mix of them, that cannot be announced.
#[derive(Debug, thiserror::Error)]
pub enum IpOptionError {
    #[error("--ip upnp or --ip any can be given only once")]
    KeywordTwice,
    #[error("--ip {0:?}: not an IP address, upnp or any")]
    NotAnAddress(String),
    #[error("--ip upnp or --ip any cannot go with an IPv4 address")]
    KeywordWithIpv4,
}

/// Servers reachable over IPv4, and over IPv6 (`udp`/`tcp` are both).
fn serves_v4(p: Proto) -> bool {
    !matches!(p, Proto::Udp6 | Proto::Tcp6)
}

fn serves_v6(p: Proto) -> bool {
    !matches!(p, Proto::Udp4 | Proto::Tcp4)
}

impl Advertised {
    /// From the `--ip` values; `servers` are our OpenVPN servers.
    pub fn new(
        ips: &[String],
        servers: &[(u16, Proto)],
        country: Option<&str>,
    ) -> Result<Advertised, IpOptionError> {
        let (mut v4, mut v6, mut keyword) = (Vec::new(), Vec::new(), None);
        for ip in ips {
            match ip.as_str() {
                "upnp" | "any" if keyword.is_some() => return Err(IpOptionError::KeywordTwice),
                "upnp" => keyword = Some(Ipv4Source::Upnp),
                "any" => keyword = Some(Ipv4Source::Any),
                _ => match ip.parse::<IpAddr>() {
                    Ok(IpAddr::V4(a)) => v4.push(a),
                    Ok(IpAddr::V6(a)) => v6.push(a),
                    Err(_) => return Err(IpOptionError::NotAnAddress(ip.clone())),
                },
            }
        }
        let v4 = match (keyword, v4.is_empty()) {
            (Some(_), false) => return Err(IpOptionError::KeywordWithIpv4),
            (Some(k), true) => k,
            (None, false) => Ipv4Source::Fixed(v4),
            (None, true) => Ipv4Source::Upnp,
        };
        Ok(Advertised {
            v4,
            v6,
            servers: servers.to_vec(),
            country: country.map(str::to_owned),
            mapping: None,
            seen_v4: None,
            seen_v6: None,
        })
    }

    /// Whether ports should be mapped on a gateway.
    pub fn wants_upnp(&self) -> bool {
        self.v4 == Ipv4Source::Upnp && self.servers.iter().any(|(_, p)| serves_v4(*p))
    }

    /// Our servers that a gateway can map (IPv4 ones).
    pub fn mappable(&self) -> Vec<(u16, Proto)> {
        self.servers
            .iter()
            .filter(|(_, p)| serves_v4(*p))
            .copied()
            .collect()
    }

    /// New port mappings (or none any more); whether the announce changed.
    pub fn set_mapping(&mut self, mapping: Option<Mapping>) -> bool {
        let before = self.render();
        self.mapping = mapping;
        before != self.render()
    }

    /// A peer told us the address it sees us from; whether the announce
    /// changed.
    pub fn peer_saw(&mut self, ip: IpAddr) -> bool {
        let before = self.render();
        match ip {
            IpAddr::V4(a) if !a.is_unspecified() => self.seen_v4 = Some(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a) => self.seen_v4 = Some(a),
                None if !a.is_unspecified() => self.seen_v6 = Some(a),
                None => {}
            },
            _ => {}
        }
        before != self.render()
    }

    pub fn mapping(&self) -> Option<&Mapping> {
        self.mapping.as_ref()
    }

    /// How the IPv4 address is obtained, for the status command.
    pub fn ipv4_source(&self) -> &'static str {
        match (&self.v4, &self.mapping) {
            (Ipv4Source::Fixed(_), _) => "fixed",
            (Ipv4Source::Upnp, Some(_)) => "upnp",
            (Ipv4Source::Upnp, None) => "upnp (no gateway mapping: as seen by peers)",
            (Ipv4Source::Any, _) => "as seen by peers",
        }
    }

    fn v4_addresses(&self) -> Vec<Address> {
        let ips: Vec<Ipv4Addr> = match &self.v4 {
            Ipv4Source::Fixed(ips) => ips.clone(),
            // What peers see is the truth (e.g. behind two NATs), the
            // gateway's idea only until a peer told us.
            Ipv4Source::Upnp => self
                .seen_v4
                .or(self.mapping.as_ref().map(|m| m.external_ip))
                .into_iter()
                .collect(),
            Ipv4Source::Any => self.seen_v4.into_iter().collect(),
        };
        let mut out = Vec::new();
        for ip in ips {
            for (port, proto) in self.servers.iter().filter(|(_, p)| serves_v4(*p)) {
                let port = match (&self.v4, &self.mapping) {
                    (Ipv4Source::Upnp, Some(m)) => match m.ports.get(&(*port, *proto)) {
                        Some(external) => *external,
                        None => continue,
                    },
                    _ => *port,
                };
                out.push(self.address(IpAddr::V4(ip), port, *proto));
            }
        }
        out
    }

    fn address(&self, ip: IpAddr, port: u16, proto: Proto) -> Address {
        Address {
            ip,
            port,
            proto,
            country: self.country.clone(),
        }
    }

    /// The announce: `ip,port,proto[,country];...`.
    pub fn render(&self) -> String {
        let mut all = self.v4_addresses();
        let v6: Vec<Ipv6Addr> = if self.v6.is_empty() {
            self.seen_v6.into_iter().collect()
        } else {
            self.v6.clone()
        };
        for ip in v6 {
            for (port, proto) in self.servers.iter().filter(|(_, p)| serves_v6(*p)) {
                all.push(self.address(IpAddr::V6(ip), *port, *proto));
            }
        }
        format_list(&all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers() -> Vec<(u16, Proto)> {
        vec![(1194, Proto::Udp), (1194, Proto::Tcp), (1195, Proto::Udp6)]
    }

    fn ips(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fixed_addresses_with_every_server_of_their_family() {
        let a =
            Advertised::new(&ips(&["198.18.0.2", "2001:db8::2"]), &servers(), Some("FR")).unwrap();
        assert!(!a.wants_upnp());
        assert_eq!(
            a.render(),
            "198.18.0.2,1194,udp,FR;198.18.0.2,1194,tcp,FR;\
             2001:db8::2,1194,udp,FR;2001:db8::2,1194,tcp,FR;2001:db8::2,1195,udp6,FR"
        );
    }

    #[test]
    fn upnp_by_default_then_what_peers_see() {
        let mut a = Advertised::new(&ips(&["2001:db8::2"]), &servers(), None).unwrap();
        assert!(a.wants_upnp());
        assert_eq!(a.mappable(), vec![(1194, Proto::Udp), (1194, Proto::Tcp)]);
        assert_eq!(
            a.ipv4_source(),
            "upnp (no gateway mapping: as seen by peers)"
        );
        // Nothing known about IPv4 yet.
        assert!(!a.render().contains("198.18"));
        // The gateway mapped UDP only.
        let m = Mapping {
            external_ip: "198.18.7.2".parse().unwrap(),
            ports: [((1194, Proto::Udp), 40000)].into(),
        };
        assert!(a.set_mapping(Some(m.clone())));
        assert!(a.render().starts_with("198.18.7.2,40000,udp;2001:db8::2,"));
        assert!(!a.set_mapping(Some(m)), "same mapping, same announce");
        // A peer sees another address (a second NAT): it wins, with the
        // mapped ports.
        assert!(a.peer_saw("::ffff:198.18.9.9".parse().unwrap()));
        assert!(a.render().starts_with("198.18.9.9,40000,udp;"));
        // The mapping is gone: our own ports.
        assert!(a.set_mapping(None));
        assert!(a
            .render()
            .starts_with("198.18.9.9,1194,udp;198.18.9.9,1194,tcp;"));
    }

    #[test]
    fn any_uses_what_peers_see_and_never_maps() {
        let mut a = Advertised::new(&ips(&["any"]), &servers(), None).unwrap();
        assert!(!a.wants_upnp());
        assert_eq!(a.render(), "");
        assert!(a.peer_saw("198.18.3.4".parse().unwrap()));
        assert_eq!(a.render(), "198.18.3.4,1194,udp;198.18.3.4,1194,tcp");
        assert!(!a.peer_saw("0.0.0.0".parse().unwrap()));
        // IPv6 seen too (no fixed IPv6).
        assert!(a.peer_saw("2001:db8::9".parse().unwrap()));
        assert!(a.render().ends_with(";2001:db8::9,1195,udp6"));
    }

    #[test]
    fn wrong_options() {
        for bad in [&["any", "upnp"][..], &["upnp", "198.18.0.1"], &["nope"]] {
            assert!(
                Advertised::new(&ips(bad), &servers(), None).is_err(),
                "{bad:?}"
            );
        }
    }
}
