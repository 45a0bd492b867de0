//! [`NetOp`]s carried out over rtnetlink, and route listings read back
//! from it. A hand-rolled encoder over a blocking `NETLINK_ROUTE` socket
//! (libc only): the few message types the node needs cost far less
//! router flash than a general netlink crate (see docs/firmware.md).
//! Taps are made with the tun driver's ioctls, as `ip tuntap` does: the
//! kernel creates no tap over rtnetlink.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::op::{Addr, NetOp, Route, RouteKind};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;

const F_REQUEST: u16 = 1;
const F_ACK: u16 = 4;
const F_REPLACE: u16 = 0x100;
const F_EXCL: u16 = 0x200;
const F_CREATE: u16 = 0x400;
const F_DUMP: u16 = 0x300;

const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_SRC: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;
const RTA_VIA: u16 = 18;

const RTN_UNICAST: u8 = 1;
const RTN_MULTICAST: u8 = 5;
const RTN_UNREACHABLE: u8 = 7;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_NOWHERE: u8 = 255;
const RTNH_F_ONLINK: u32 = 4;
const IFF_UP: u32 = 1;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// A listing is cut there: no table of ours comes close, and a bound
/// keeps a flooded kernel table from growing the node.
pub const MAX_LISTED_ROUTES: usize = 100_000;

fn af(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn ip_of(family: u8, b: &[u8]) -> Option<IpAddr> {
    match (family, b.len()) {
        (AF_INET, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        (AF_INET6, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// One netlink message being built: header, fixed part, attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32) -> Msg {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&(flags | F_REQUEST).to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        Msg(b)
    }

    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn attr(&mut self, kind: u16, data: &[u8]) {
        self.put(&(4 + data.len() as u16).to_ne_bytes());
        self.put(&kind.to_ne_bytes());
        self.put(data);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    fn done(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

/// `struct rtmsg` and the route's attributes.
fn route_msg(
    m: &mut Msg,
    r: &Route,
    delete: bool,
    index: &dyn Fn(&str) -> io::Result<u32>,
) -> io::Result<()> {
    let (kind, scope) = match r.kind {
        RouteKind::Unreachable => (RTN_UNREACHABLE, RT_SCOPE_UNIVERSE),
        RouteKind::Multicast => (RTN_MULTICAST, RT_SCOPE_UNIVERSE),
        // As `ip`: a deletion matches any scope, a route with no next
        // hop is on the link.
        RouteKind::Unicast if delete => (RTN_UNICAST, RT_SCOPE_NOWHERE),
        RouteKind::Unicast if r.via.is_none() => (RTN_UNICAST, RT_SCOPE_LINK),
        RouteKind::Unicast => (RTN_UNICAST, RT_SCOPE_UNIVERSE),
    };
    let (src, src_len) = r.src.map_or((None, 0), |(ip, len)| (Some(ip), len));
    let table = u8::try_from(r.table).unwrap_or(0);
    m.put(&[
        af(r.dst.0),
        r.dst.1,
        src_len,
        0,
        table,
        r.proto,
        scope,
        kind,
    ]);
    let flags = if r.onlink { RTNH_F_ONLINK } else { 0 };
    m.put(&flags.to_ne_bytes());
    m.attr(RTA_TABLE, &r.table.to_ne_bytes());
    m.attr(RTA_DST, &octets(r.dst.0));
    if let Some(src) = src {
        m.attr(RTA_SRC, &octets(src));
    }
    match r.via {
        Some(via) if af(via) == af(r.dst.0) => m.attr(RTA_GATEWAY, &octets(via)),
        Some(via) => {
            let mut v = u16::from(af(via)).to_ne_bytes().to_vec();
            v.extend(octets(via));
            m.attr(RTA_VIA, &v);
        }
        None => {}
    }
    if let Some(dev) = &r.dev {
        m.attr(RTA_OIF, &index(dev)?.to_ne_bytes());
    }
    if let Some(metric) = r.metric {
        m.attr(RTA_PRIORITY, &metric.to_ne_bytes());
    }
    if let Some(s) = r.pref_src {
        m.attr(RTA_PREFSRC, &octets(s));
    }
    Ok(())
}

fn addr_msg(m: &mut Msg, a: &Addr, index: &dyn Fn(&str) -> io::Result<u32>) -> io::Result<()> {
    // `struct ifaddrmsg`: family, prefix length, flags, scope (the
    // kernel's for IPv6, global for IPv4 as `ip` does), index.
    m.put(&[af(a.ip), a.len, 0, RT_SCOPE_UNIVERSE]);
    m.put(&index(&a.dev)?.to_ne_bytes());
    m.attr(IFA_LOCAL, &octets(a.ip));
    m.attr(IFA_ADDRESS, &octets(a.ip));
    Ok(())
}

/// The rtnetlink request for `op` (None for the tap operations, which are
/// ioctls). `index` names interfaces' indexes.
pub fn encode(
    op: &NetOp,
    seq: u32,
    index: &dyn Fn(&str) -> io::Result<u32>,
) -> io::Result<Option<Vec<u8>>> {
    let mut m;
    match op {
        NetOp::TapAdd(_) | NetOp::TapDel(_) => return Ok(None),
        NetOp::LinkUp { dev, mtu } => {
            m = Msg::new(RTM_NEWLINK, F_ACK, seq);
            // `struct ifinfomsg`: family, pad, type, index, flags, change.
            m.put(&[0, 0, 0, 0]);
            m.put(&(index(dev)? as i32).to_ne_bytes());
            m.put(&IFF_UP.to_ne_bytes());
            m.put(&IFF_UP.to_ne_bytes());
            if let Some(mtu) = mtu {
                m.attr(IFLA_MTU, &mtu.to_ne_bytes());
            }
        }
        NetOp::AddrAdd(a) => {
            m = Msg::new(RTM_NEWADDR, F_ACK | F_CREATE | F_EXCL, seq);
            addr_msg(&mut m, a, index)?;
        }
        NetOp::AddrDel(a) => {
            m = Msg::new(RTM_DELADDR, F_ACK, seq);
            addr_msg(&mut m, a, index)?;
        }
        // The kernel has one multicast route per interface, all with the
        // same destination and metric: with EXCL it would refuse a second
        // one; without it, only one of the same device exists already.
        NetOp::RouteAdd(r) if r.kind == RouteKind::Multicast => {
            m = Msg::new(RTM_NEWROUTE, F_ACK | F_CREATE, seq);
            route_msg(&mut m, r, false, index)?;
        }
        NetOp::RouteAdd(r) => {
            m = Msg::new(RTM_NEWROUTE, F_ACK | F_CREATE | F_EXCL, seq);
            route_msg(&mut m, r, false, index)?;
        }
        NetOp::RouteReplace(r) => {
            m = Msg::new(RTM_NEWROUTE, F_ACK | F_CREATE | F_REPLACE, seq);
            route_msg(&mut m, r, false, index)?;
        }
        NetOp::RouteDel(r) => {
            m = Msg::new(RTM_DELROUTE, F_ACK, seq);
            route_msg(&mut m, r, true, index)?;
        }
    }
    Ok(Some(m.done()))
}

/// The interface index of `dev`.
pub fn if_index(dev: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(dev).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: a NUL-terminated string, only read.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no device {dev}"),
        )),
        i => Ok(i),
    }
}

/// The name of interface `index` (None: gone meanwhile).
fn if_name(index: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as the call requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// A `NETLINK_ROUTE` socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The messages of one datagram: (type, sequence, payload).
fn messages(mut b: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes(b[0..4].try_into().ok()?) as usize;
        if len < 16 || len > b.len() {
            return None;
        }
        let kind = u16::from_ne_bytes(b[4..6].try_into().ok()?);
        let seq = u32::from_ne_bytes(b[8..12].try_into().ok()?);
        let payload = &b[16..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((kind, seq, payload))
    })
}

/// Attributes: (type, data).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        if len < 4 || len > b.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        let data = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((kind, data))
    })
}

/// A route of a `RTM_NEWROUTE` message (None: not one we can describe,
/// e.g. multipath).
pub fn decode_route(p: &[u8], name: &dyn Fn(u32) -> Option<String>) -> Option<Route> {
    let h = p.get(..12)?;
    let family = h[0];
    let kind = match h[7] {
        RTN_UNICAST => RouteKind::Unicast,
        RTN_UNREACHABLE => RouteKind::Unreachable,
        RTN_MULTICAST => RouteKind::Multicast,
        _ => return None,
    };
    let flags = u32::from_ne_bytes(h[8..12].try_into().ok()?);
    let any: IpAddr = if family == AF_INET {
        IpAddr::from([0u8; 4])
    } else {
        IpAddr::from([0u8; 16])
    };
    let mut r = Route {
        kind,
        dst: (any, h[1]),
        src: None,
        via: None,
        dev: None,
        proto: h[5],
        metric: None,
        table: u32::from(h[4]),
        onlink: flags & RTNH_F_ONLINK != 0,
        pref_src: None,
    };
    for (t, d) in attrs(&p[12..]) {
        let u32_of = || Some(u32::from_ne_bytes(d.get(..4)?.try_into().ok()?));
        match t {
            RTA_DST => r.dst.0 = ip_of(family, d)?,
            RTA_SRC => r.src = Some((ip_of(family, d)?, h[2])),
            RTA_GATEWAY => r.via = Some(ip_of(family, d)?),
            RTA_VIA => {
                let f = u16::from_ne_bytes(d.get(..2)?.try_into().ok()?);
                r.via = Some(ip_of(u8::try_from(f).ok()?, &d[2..])?);
            }
            RTA_OIF => r.dev = name(u32_of()?),
            RTA_PRIORITY => r.metric = u32_of(),
            RTA_TABLE => r.table = u32_of()?,
            RTA_PREFSRC => r.pref_src = ip_of(family, d),
            _ => {}
        }
    }
    // `ip` shows no `from ::/0`.
    if r.src.is_none() && h[2] != 0 {
        return None;
    }
    Some(r)
}

/// What the kernel answered an `NLMSG_ERROR`: Ok for an acknowledgement.
fn ack(payload: &[u8]) -> io::Result<()> {
    let code = payload
        .get(..4)
        .map(|b| i32::from_ne_bytes(b.try_into().unwrap_or_default()))
        .unwrap_or(-libc::EPROTO);
    match code {
        0 => Ok(()),
        c => Err(io::Error::from_raw_os_error(-c)),
    }
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: plain system calls; the descriptor is owned at once.
        let fd = unsafe {
            let fd = cvt(libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            ))?;
            OwnedFd::from_raw_fd(fd)
        };
        // The kernel answers at once; a bound keeps a wedged kernel from
        // hanging the node.
        let tv = libc::timeval {
            tv_sec: Duration::from_secs(5).as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: `tv` outlives the call and its size is given.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        })?;
        Ok(Netlink { fd, seq: 0 })
    }

    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `msg` is valid for its length; the kernel is the
        // default destination of an unconnected netlink socket.
        cvt(unsafe {
            libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) as libc::c_int
        })?;
        Ok(())
    }

    fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<&'a [u8]> {
        // SAFETY: the kernel writes at most `buf.len()` bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(&buf[..n as usize])
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Carries out `op`.
    pub fn apply(&mut self, op: &NetOp) -> io::Result<()> {
        let seq = self.next_seq();
        match encode(op, seq, &if_index)? {
            Some(msg) => self.request(&msg, seq, &mut |_, _| {}),
            None => match op {
                NetOp::TapAdd(t) => super::tap::create(t),
                NetOp::TapDel(t) => super::tap::delete(t),
                _ => Ok(()),
            },
        }
    }

    /// Sends a request and reads its answers until its acknowledgement
    /// or the end of its dump, giving `each` the other messages.
    fn request(
        &mut self,
        msg: &[u8],
        seq: u32,
        each: &mut dyn FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.send(msg)?;
        // The kernel fills a dump's messages up to 32 KiB
        // (SKB_WITH_OVERHEAD(32768) in netlink_recvmsg), never more.
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let got = self.recv(&mut buf)?;
            for (kind, s, payload) in messages(got) {
                if s != seq {
                    continue;
                }
                match kind {
                    NLMSG_ERROR => return ack(payload),
                    NLMSG_DONE => return Ok(()),
                    k => each(k, payload),
                }
            }
        }
    }

    /// The routes of the main table of one family (IPv4 if `v4`), of
    /// protocol `proto` and through `dev` when given: `ip route show`.
    pub fn routes(
        &mut self,
        v4: bool,
        proto: Option<u8>,
        dev: Option<&str>,
    ) -> io::Result<Vec<Route>> {
        let seq = self.next_seq();
        let mut m = Msg::new(RTM_GETROUTE, F_DUMP, seq);
        m.put(&[if v4 { AF_INET } else { AF_INET6 }, 0, 0, 0, 0, 0, 0, 0]);
        m.put(&0u32.to_ne_bytes());
        let mut found = Vec::new();
        self.request(&m.done(), seq, &mut |kind, p| {
            if kind != RTM_NEWROUTE || found.len() >= MAX_LISTED_ROUTES {
                return;
            }
            let Some(r) = decode_route(p, &if_name) else {
                return;
            };
            let wanted = r.table == super::op::MAIN_TABLE
                && proto.is_none_or(|p| p == r.proto)
                && dev.is_none_or(|d| r.dev.as_deref() == Some(d));
            if wanted {
                found.push(r);
            }
        })?;
        Ok(found)
    }

    /// The route the kernel would take to `dst`: `ip route get`.
    pub fn route_to(&mut self, dst: IpAddr) -> io::Result<Route> {
        let seq = self.next_seq();
        // The acknowledgement follows the answer: the end of the request.
        let mut m = Msg::new(RTM_GETROUTE, F_ACK, seq);
        let len = if dst.is_ipv4() { 32 } else { 128 };
        m.put(&[af(dst), len, 0, 0, 0, 0, 0, 0]);
        m.put(&0u32.to_ne_bytes());
        m.attr(RTA_DST, &octets(dst));
        let mut found = None;
        self.request(&m.done(), seq, &mut |kind, p| {
            if kind == RTM_NEWROUTE {
                found = decode_route(p, &if_name);
            }
        })?;
        found.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "no route in the kernel's answer",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::op::{PROTO_BABEL, PROTO_BOOT};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn index(dev: &str) -> io::Result<u32> {
        match dev {
            "eth0" => Ok(2),
            "re6stnet3" => Ok(7),
            _ => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn name(i: u32) -> Option<String> {
        [(2, "eth0"), (7, "re6stnet3")]
            .iter()
            .find(|(n, _)| *n == i)
            .map(|(_, d)| d.to_string())
    }

    fn hdr(b: &[u8]) -> (u32, u16, u16, u32) {
        (
            u32::from_ne_bytes(b[0..4].try_into().unwrap()),
            u16::from_ne_bytes(b[4..6].try_into().unwrap()),
            u16::from_ne_bytes(b[6..8].try_into().unwrap()),
            u32::from_ne_bytes(b[8..12].try_into().unwrap()),
        )
    }

    #[test]
    fn an_unreachable_route_is_added_exclusively_and_deleted_with_its_type() {
        let r = Route::unreachable(ip("2001:db8::"), 48, PROTO_BOOT);
        let add = encode(&NetOp::RouteAdd(r.clone()), 9, &index)
            .unwrap()
            .unwrap();
        let (len, kind, flags, seq) = hdr(&add);
        assert_eq!((len as usize, kind, seq), (add.len(), RTM_NEWROUTE, 9));
        assert_eq!(flags, F_REQUEST | F_ACK | F_CREATE | F_EXCL);
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type.
        assert_eq!(
            &add[16..24],
            &[AF_INET6, 48, 0, 0, 254, 3, 0, RTN_UNREACHABLE]
        );
        let del = encode(&NetOp::RouteDel(r.clone()), 10, &index)
            .unwrap()
            .unwrap();
        assert_eq!(hdr(&del).1, RTM_DELROUTE);
        assert_eq!(hdr(&del).2, F_REQUEST | F_ACK);
        // What the kernel would list back is the route itself.
        let back = decode_route(&add[16..], &name).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn an_ipv4_route_through_an_ipv6_next_hop_round_trips() {
        let mut r = Route::via(ip("198.18.9.0"), 24, Some(ip("fe80::3")), PROTO_BABEL);
        r.dev = Some("re6stnet3".into());
        r.metric = Some(0);
        r.onlink = true;
        r.pref_src = Some(ip("198.18.1.1"));
        let msg = encode(&NetOp::RouteReplace(r.clone()), 1, &index)
            .unwrap()
            .unwrap();
        assert_eq!(hdr(&msg).2, F_REQUEST | F_ACK | F_CREATE | F_REPLACE);
        assert_eq!(decode_route(&msg[16..], &name).unwrap(), r);
        let mut s = Route::via(ip("2001:db8:42:5::"), 64, Some(ip("fe80::1")), PROTO_BABEL);
        s.src = Some((ip("2001:db8:42::"), 48));
        s.dev = Some("eth0".into());
        let msg = encode(&NetOp::RouteAdd(s.clone()), 1, &index)
            .unwrap()
            .unwrap();
        assert_eq!(decode_route(&msg[16..], &name).unwrap(), s);
    }

    #[test]
    fn an_address_names_its_interface_by_index() {
        let a = Addr {
            ip: ip("198.18.1.1"),
            len: 32,
            dev: "eth0".into(),
        };
        let msg = encode(&NetOp::AddrAdd(a.clone()), 1, &index)
            .unwrap()
            .unwrap();
        assert_eq!(hdr(&msg).1, RTM_NEWADDR);
        assert_eq!(&msg[16..24], &[AF_INET, 32, 0, 0, 2, 0, 0, 0]);
        let local: Vec<_> = attrs(&msg[24..]).collect();
        assert_eq!(
            local,
            vec![
                (IFA_LOCAL, &[198, 18, 1, 1][..]),
                (IFA_ADDRESS, &[198, 18, 1, 1][..])
            ]
        );
        let missing = NetOp::AddrAdd(Addr {
            dev: "nope".into(),
            ..a
        });
        assert!(encode(&missing, 1, &index).is_err());
        assert!(encode(&NetOp::TapAdd("t".into()), 1, &index)
            .unwrap()
            .is_none());
    }

    #[test]
    fn truncated_answers_are_not_read_past_their_end() {
        let r = Route::unreachable(ip("2001:db8::"), 48, PROTO_BOOT);
        let msg = encode(&NetOp::RouteAdd(r), 1, &index).unwrap().unwrap();
        for cut in 0..msg.len() {
            let _ = messages(&msg[..cut]).count();
            let _ = decode_route(&msg[16.min(cut)..cut], &name);
        }
        assert_eq!(ack(&[]).unwrap_err().raw_os_error(), Some(libc::EPROTO));
        assert_eq!(
            ack(&(-17i32).to_ne_bytes()).unwrap_err().raw_os_error(),
            Some(17)
        );
    }
}
