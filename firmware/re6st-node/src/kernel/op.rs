//! What the node changes in the kernel, as values: each operation knows
//! its undo, and prints as the `ip` command that would do the same (for
//! logs and errors).

use std::fmt;
use std::net::IpAddr;

/// The kernel's main routing table.
pub const MAIN_TABLE: u32 = 254;
/// The kernel's local table (local addresses, broadcast, multicast).
pub const LOCAL_TABLE: u32 = 255;
/// Routes the kernel adds itself (`proto kernel`).
pub const PROTO_KERNEL: u8 = 2;
/// Routes added by hand (`ip route add` without `proto`).
pub const PROTO_BOOT: u8 = 3;
/// `proto static`.
pub const PROTO_STATIC: u8 = 4;
/// babeld's routes.
pub const PROTO_BABEL: u8 = 42;

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub ip: IpAddr,
    pub len: u8,
    pub dev: String,
}

/// A route's type: forwarding, a black hole answering "unreachable", or
/// the multicast route the kernel gives each IPv6 interface (without it,
/// nothing can be sent to a multicast group on that interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Unicast,
    Unreachable,
    Multicast,
}

/// A route, as added, replaced, deleted or listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub kind: RouteKind,
    pub dst: (IpAddr, u8),
    /// Source-specific routes (IPv6): `from`.
    pub src: Option<(IpAddr, u8)>,
    /// Next hop; an IPv6 one for an IPv4 route is `via inet6`.
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    pub proto: u8,
    /// None: the kernel's default (0 for IPv4, 1024 for IPv6).
    pub metric: Option<u32>,
    pub table: u32,
    /// The next hop is on the link whatever the interface's addresses.
    pub onlink: bool,
    /// `src`: the source address for what the host itself sends.
    pub pref_src: Option<IpAddr>,
}

impl Route {
    /// `ip route add unreachable DST/LEN proto PROTO`.
    pub fn unreachable(dst: IpAddr, len: u8, proto: u8) -> Route {
        Route {
            kind: RouteKind::Unreachable,
            ..Route::via(dst, len, None, proto)
        }
    }

    /// A forwarding route of the main table.
    pub fn via(dst: IpAddr, len: u8, via: Option<IpAddr>, proto: u8) -> Route {
        Route {
            kind: RouteKind::Unicast,
            dst: (dst, len),
            src: None,
            via,
            dev: None,
            proto,
            metric: None,
            table: MAIN_TABLE,
            onlink: false,
            pref_src: None,
        }
    }

    /// The kernel's own IPv6 multicast route of `dev` (`multicast
    /// ff00::/8 dev DEV table local proto kernel metric 256`).
    pub fn multicast(dev: &str) -> Route {
        Route {
            kind: RouteKind::Multicast,
            dev: Some(dev.into()),
            metric: Some(256),
            table: LOCAL_TABLE,
            ..Route::via(
                IpAddr::from([0xff00, 0, 0, 0, 0, 0, 0, 0]),
                8,
                None,
                PROTO_KERNEL,
            )
        }
    }

    pub fn is_ipv4(&self) -> bool {
        self.dst.0.is_ipv4()
    }
}

/// One change of the kernel's network state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetOp {
    /// A persistent tap (it outlives whatever process opens it).
    TapAdd(String),
    /// Deletes a tap (and only a tap: another link of that name stays).
    TapDel(String),
    /// Brings a link up, setting its MTU if given (never undone, as the
    /// link is one of ours or goes with its tap).
    LinkUp {
        dev: String,
        mtu: Option<u32>,
    },
    AddrAdd(Addr),
    AddrDel(Addr),
    /// Fails if the route exists.
    RouteAdd(Route),
    /// Adds or replaces (never undone: it repairs what babeld meant).
    RouteReplace(Route),
    RouteDel(Route),
}

impl NetOp {
    /// What puts the kernel back as it was before `self` succeeded.
    pub fn undo(&self) -> Option<NetOp> {
        match self {
            NetOp::TapAdd(t) => Some(NetOp::TapDel(t.clone())),
            NetOp::AddrAdd(a) => Some(NetOp::AddrDel(a.clone())),
            NetOp::RouteAdd(r) => Some(NetOp::RouteDel(r.clone())),
            NetOp::TapDel(_)
            | NetOp::LinkUp { .. }
            | NetOp::AddrDel(_)
            | NetOp::RouteReplace(_)
            | NetOp::RouteDel(_) => None,
        }
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "-4"
    } else {
        "-6"
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RouteKind::Unreachable => f.write_str("unreachable ")?,
            RouteKind::Multicast => f.write_str("multicast ")?,
            RouteKind::Unicast => {}
        }
        write!(f, "{}/{}", self.dst.0, self.dst.1)?;
        if let Some((ip, len)) = self.src {
            write!(f, " from {ip}/{len}")?;
        }
        if let Some(via) = self.via {
            let inet6 = if self.is_ipv4() && via.is_ipv6() {
                "inet6 "
            } else {
                ""
            };
            write!(f, " via {inet6}{via}")?;
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if self.table != MAIN_TABLE {
            write!(f, " table {}", self.table)?;
        }
        write!(f, " proto {}", self.proto)?;
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        if self.onlink {
            f.write_str(" onlink")?;
        }
        if let Some(s) = self.pref_src {
            write!(f, " src {s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for NetOp {
    /// The `ip` command doing the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetOp::TapAdd(t) => write!(f, "ip tuntap add dev {t} mode tap"),
            NetOp::TapDel(t) => write!(f, "ip tuntap del dev {t} mode tap"),
            NetOp::LinkUp { dev, mtu } => {
                write!(f, "ip link set {dev} up")?;
                match mtu {
                    Some(m) => write!(f, " mtu {m}"),
                    None => Ok(()),
                }
            }
            NetOp::AddrAdd(a) | NetOp::AddrDel(a) => {
                let cmd = if matches!(self, NetOp::AddrAdd(_)) {
                    "add"
                } else {
                    "del"
                };
                let fam = family(a.ip);
                write!(f, "ip {fam} addr {cmd} {}/{} dev {}", a.ip, a.len, a.dev)
            }
            NetOp::RouteAdd(r) | NetOp::RouteReplace(r) | NetOp::RouteDel(r) => {
                let cmd = match self {
                    NetOp::RouteAdd(_) => "add",
                    NetOp::RouteReplace(_) => "replace",
                    _ => "del",
                };
                write!(f, "ip {} route {cmd} {r}", family(r.dst.0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_addition_is_undone_by_its_deletion_and_nothing_else_is() {
        let r = Route::unreachable(ip("2001:db8::"), 48, PROTO_BOOT);
        let a = Addr {
            ip: ip("2001:db8:0:1::1"),
            len: 64,
            dev: "eth0".into(),
        };
        assert_eq!(
            NetOp::RouteAdd(r.clone()).undo(),
            Some(NetOp::RouteDel(r.clone()))
        );
        assert_eq!(
            NetOp::AddrAdd(a.clone()).undo(),
            Some(NetOp::AddrDel(a.clone()))
        );
        assert_eq!(
            NetOp::TapAdd("re6stnet1".into()).undo(),
            Some(NetOp::TapDel("re6stnet1".into()))
        );
        for op in [
            NetOp::RouteDel(r.clone()),
            NetOp::RouteReplace(r),
            NetOp::AddrDel(a),
            NetOp::TapDel("t".into()),
            NetOp::LinkUp {
                dev: "t".into(),
                mtu: None,
            },
        ] {
            assert_eq!(op.undo(), None, "{op}");
        }
    }

    #[test]
    fn prints_as_the_ip_command() {
        let mut r = Route::via(ip("198.18.9.0"), 24, Some(ip("fe80::3")), PROTO_BABEL);
        r.src = None;
        r.dev = Some("re6stnet3".into());
        r.metric = Some(0);
        r.onlink = true;
        r.pref_src = Some(ip("198.18.1.1"));
        assert_eq!(
            NetOp::RouteReplace(r).to_string(),
            "ip -4 route replace 198.18.9.0/24 via inet6 fe80::3 dev re6stnet3 proto 42 \
             metric 0 onlink src 198.18.1.1"
        );
        assert_eq!(
            NetOp::RouteAdd(Route::unreachable(ip("2001:db8::"), 48, PROTO_BOOT)).to_string(),
            "ip -6 route add unreachable 2001:db8::/48 proto 3"
        );
        assert_eq!(
            NetOp::RouteDel(Route::multicast("re6stnet1")).to_string(),
            "ip -6 route del multicast ff00::/8 dev re6stnet1 table 255 proto 2 metric 256"
        );
        assert_eq!(
            NetOp::TapAdd("re6stnet2".into()).to_string(),
            "ip tuntap add dev re6stnet2 mode tap"
        );
    }
}
