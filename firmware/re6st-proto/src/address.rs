//! Peer address lists, `ip,port,proto[,country];...`: what nodes announce
//! to each other (message code 1), cache, and get from `getBootstrapPeer`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use thiserror::Error;

/// Tunnel transport of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Udp,
    Tcp,
    Udp4,
    Tcp4,
    Udp6,
    Tcp6,
}

impl Proto {
    pub const ALL: [Proto; 6] = [
        Proto::Udp,
        Proto::Tcp,
        Proto::Udp4,
        Proto::Tcp4,
        Proto::Udp6,
        Proto::Tcp6,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
            Proto::Udp4 => "udp4",
            Proto::Tcp4 => "tcp4",
            Proto::Udp6 => "udp6",
            Proto::Tcp6 => "tcp6",
        }
    }

    pub fn is_tcp(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Tcp4 | Proto::Tcp6)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Proto::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| AddressError::Proto(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("address {0:?}: expected ip,port,proto[,country]")]
    Shape(String),
    #[error("invalid IP address {0:?}")]
    Ip(String),
    #[error("invalid port {0:?}")]
    Port(String),
    #[error("unknown protocol {0:?}")]
    Proto(String),
}

/// One address a peer can be reached at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub ip: IpAddr,
    pub port: u16,
    pub proto: Proto,
    /// Country code, announced by protocol 7 and later.
    pub country: Option<String>,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.ip, self.port, self.proto)?;
        if let Some(c) = &self.country {
            write!(f, ",{c}")?;
        }
        Ok(())
    }
}

impl FromStr for Address {
    type Err = AddressError;

    /// Parses `ip,port,proto[,country]`; fields after the fourth are
    /// ignored, as upstream does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut fields = s.split(',');
        let (Some(ip), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(AddressError::Shape(s.to_owned()));
        };
        Ok(Address {
            ip: ip.parse().map_err(|_| AddressError::Ip(ip.to_owned()))?,
            port: port
                .parse()
                .map_err(|_| AddressError::Port(port.to_owned()))?,
            proto: proto.parse()?,
            country: fields.next().map(str::to_owned),
        })
    }
}

/// A parsed list: the valid addresses, and what was wrong with the others
/// (upstream logs and skips bad entries; so do we).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressList {
    pub addresses: Vec<Address>,
    pub rejected: Vec<AddressError>,
}

/// Parses `a;b;c`.
pub fn parse_list(s: &str) -> AddressList {
    let mut list = AddressList::default();
    for entry in s.split(';') {
        match entry.parse() {
            Ok(a) => list.addresses.push(a),
            Err(e) => list.rejected.push(e),
        }
    }
    list
}

/// Formats addresses as upstream does (`;`-separated).
pub fn format_list<'a>(addresses: impl IntoIterator<Item = &'a Address>) -> String {
    let mut s = String::new();
    for (i, a) in addresses.into_iter().enumerate() {
        if i > 0 {
            s.push(';');
        }
        s.push_str(&a.to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_format() {
        let l = parse_list(
            "198.18.0.1,1194,udp;2001:db8::1,1194,tcp6,FR;bad;1.2.3.4,x,udp;1.2.3.4,1,sctp",
        );
        assert_eq!(l.addresses.len(), 2);
        assert_eq!(l.addresses[1].country.as_deref(), Some("FR"));
        assert_eq!(l.rejected.len(), 3);
        assert_eq!(
            format_list(&l.addresses),
            "198.18.0.1,1194,udp;2001:db8::1,1194,tcp6,FR"
        );
        assert!(parse_list("").addresses.is_empty());
    }

    fn address() -> impl Strategy<Value = Address> {
        (
            any::<bool>(),
            any::<u32>(),
            any::<u128>(),
            any::<u16>(),
            0usize..6,
            proptest::option::of("[A-Z]{2}"),
        )
            .prop_map(|(v6, a4, a6, port, p, country)| Address {
                ip: if v6 {
                    IpAddr::from(a6.to_be_bytes())
                } else {
                    IpAddr::from(a4.to_be_bytes())
                },
                port,
                proto: Proto::ALL[p],
                country,
            })
    }

    proptest! {
        #[test]
        fn round_trip(list in proptest::collection::vec(address(), 1..5)) {
            let parsed = parse_list(&format_list(&list));
            prop_assert!(parsed.rejected.is_empty());
            prop_assert_eq!(parsed.addresses, list);
        }

        #[test]
        fn never_panics(s in ".{0,100}") {
            let _ = parse_list(&s);
        }
    }
}
