//! The binary control protocol of re6st's patched babeld, which upstream's
//! registry and node speak on `RUN/babeld.sock`.
//!
//! We run stock babeld, so our node serves this protocol itself (built from
//! stock babeld's text dump) and our registry can read it; this module is
//! only the codec. A connection starts with one byte from the client (the
//! protocol version, 1); then each message is a header (`u16` type, `u32`
//! body length, big endian) and a body. Type 1 is a dump (request: one
//! flags byte; response: interfaces, neighbours, exported and installed
//! routes), type 2 sets a neighbour's cost multiplier.

use std::net::Ipv6Addr;

use thiserror::Error;

/// The byte a client sends right after connecting.
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 6;
pub const DUMP: u16 = 1;
pub const SET_COST_MULTIPLIER: u16 = 2;

/// Dump flags: which sections the client wants.
pub const DUMP_INTERFACES: u8 = 1;
pub const DUMP_NEIGHBOURS: u8 = 2;
pub const DUMP_XROUTES: u8 = 4;
pub const DUMP_ROUTES: u8 = 8;

/// Route flag: installed in the kernel.
pub const ROUTE_INSTALLED: u8 = 1;

/// Requests are tiny; anything bigger is not this protocol.
pub const MAX_REQUEST: u32 = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CtlError {
    #[error("babel control message truncated")]
    Truncated,
    #[error("babel control message type {0} unknown")]
    UnknownType(u16),
    #[error("babel control message of {0} bytes is too long")]
    TooLong(u32),
    #[error("babel control string is not UTF-8")]
    Utf8,
    #[error("babel control section has {0} entries, more than 65535")]
    TooMany(usize),
    #[error("babel control string {0:?} contains a NUL byte")]
    Nul(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub address: Ipv6Addr,
    pub ifindex: u32,
    pub reach: u16,
    pub rxcost: u16,
    pub txcost: u16,
    pub rtt: u16,
    pub rttcost: u16,
    pub channel: i32,
    pub if_up: u16,
    pub cost_multiplier: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XRoute {
    pub prefix: Ipv6Addr,
    pub plen: u8,
    pub metric: u16,
}

/// IPv4 prefixes are IPv4-mapped (`::ffff:a.b.c.d`, length + 96).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: Ipv6Addr,
    pub plen: u8,
    pub metric: u16,
    pub smoothed_metric: u16,
    pub refmetric: u16,
    pub id: [u8; 8],
    pub seqno: i32,
    pub age: i32,
    pub ifindex: u32,
    pub neigh_address: Ipv6Addr,
    pub nexthop: Ipv6Addr,
    pub flags: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    pub interfaces: Vec<Interface>,
    pub neighbours: Vec<Neighbour>,
    pub xroutes: Vec<XRoute>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Dump {
        flags: u8,
    },
    SetCostMultiplier {
        address: Ipv6Addr,
        ifindex: u32,
        multiplier: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Dump(Dump),
    SetCostMultiplier { flags: u8 },
}

/// Header of the next message in `buf`, once complete: (type, body length).
pub fn header(buf: &[u8]) -> Option<(u16, u32)> {
    let h = buf.get(..HEADER_LEN)?;
    Some((
        u16::from_be_bytes([h[0], h[1]]),
        u32::from_be_bytes([h[2], h[3], h[4], h[5]]),
    ))
}

fn frame(kind: u16, body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Dump { flags } => frame(DUMP, vec![*flags]),
            Request::SetCostMultiplier {
                address,
                ifindex,
                multiplier,
            } => {
                let mut b = address.octets().to_vec();
                b.extend_from_slice(&ifindex.to_be_bytes());
                b.extend_from_slice(&multiplier.to_be_bytes());
                frame(SET_COST_MULTIPLIER, b)
            }
        }
    }

    /// Splits one request off the front of `buf`: `Ok(None)` until it is
    /// complete, then the request and the bytes it used.
    pub fn decode(buf: &[u8]) -> Result<Option<(Request, usize)>, CtlError> {
        let Some((kind, len)) = header(buf) else {
            return Ok(None);
        };
        if len > MAX_REQUEST {
            return Err(CtlError::TooLong(len));
        }
        let end = HEADER_LEN + len as usize;
        let Some(body) = buf.get(HEADER_LEN..end) else {
            return Ok(None);
        };
        let mut r = Reader(body);
        let req = match kind {
            DUMP => Request::Dump { flags: r.u8()? },
            SET_COST_MULTIPLIER => Request::SetCostMultiplier {
                address: r.ip()?,
                ifindex: r.u32()?,
                multiplier: r.u16()?,
            },
            k => return Err(CtlError::UnknownType(k)),
        };
        Ok(Some((req, end)))
    }
}

impl Response {
    pub fn encode(&self) -> Result<Vec<u8>, CtlError> {
        Ok(match self {
            Response::SetCostMultiplier { flags } => frame(SET_COST_MULTIPLIER, vec![*flags]),
            Response::Dump(d) => {
                let mut b = Vec::new();
                count(&mut b, d.interfaces.len())?;
                for i in &d.interfaces {
                    // NUL-terminated on the wire: a NUL inside would end
                    // the name early and shift everything after it.
                    if i.name.contains('\0') {
                        return Err(CtlError::Nul(i.name.clone()));
                    }
                    b.extend_from_slice(&i.index.to_be_bytes());
                    b.extend_from_slice(i.name.as_bytes());
                    b.push(0);
                }
                count(&mut b, d.neighbours.len())?;
                for n in &d.neighbours {
                    b.extend_from_slice(&n.address.octets());
                    b.extend_from_slice(&n.ifindex.to_be_bytes());
                    for v in [n.reach, n.rxcost, n.txcost, n.rtt, n.rttcost] {
                        b.extend_from_slice(&v.to_be_bytes());
                    }
                    b.extend_from_slice(&n.channel.to_be_bytes());
                    b.extend_from_slice(&n.if_up.to_be_bytes());
                    b.extend_from_slice(&n.cost_multiplier.to_be_bytes());
                }
                count(&mut b, d.xroutes.len())?;
                for x in &d.xroutes {
                    b.extend_from_slice(&x.prefix.octets());
                    b.push(x.plen);
                    b.extend_from_slice(&x.metric.to_be_bytes());
                }
                count(&mut b, d.routes.len())?;
                for r in &d.routes {
                    b.extend_from_slice(&r.prefix.octets());
                    b.push(r.plen);
                    for v in [r.metric, r.smoothed_metric, r.refmetric] {
                        b.extend_from_slice(&v.to_be_bytes());
                    }
                    b.extend_from_slice(&r.id);
                    b.extend_from_slice(&r.seqno.to_be_bytes());
                    b.extend_from_slice(&r.age.to_be_bytes());
                    b.extend_from_slice(&r.ifindex.to_be_bytes());
                    b.extend_from_slice(&r.neigh_address.octets());
                    b.extend_from_slice(&r.nexthop.octets());
                    b.push(r.flags);
                }
                frame(DUMP, b)
            }
        })
    }

    /// Decodes the body of a response of type `kind`.
    pub fn decode(kind: u16, body: &[u8]) -> Result<Response, CtlError> {
        let mut r = Reader(body);
        match kind {
            SET_COST_MULTIPLIER => Ok(Response::SetCostMultiplier { flags: r.u8()? }),
            DUMP => {
                let mut d = Dump::default();
                for _ in 0..r.u16()? {
                    d.interfaces.push(Interface {
                        index: r.u32()?,
                        name: r.string()?,
                    });
                }
                for _ in 0..r.u16()? {
                    d.neighbours.push(Neighbour {
                        address: r.ip()?,
                        ifindex: r.u32()?,
                        reach: r.u16()?,
                        rxcost: r.u16()?,
                        txcost: r.u16()?,
                        rtt: r.u16()?,
                        rttcost: r.u16()?,
                        channel: r.u32()? as i32,
                        if_up: r.u16()?,
                        cost_multiplier: r.u16()?,
                    });
                }
                for _ in 0..r.u16()? {
                    d.xroutes.push(XRoute {
                        prefix: r.ip()?,
                        plen: r.u8()?,
                        metric: r.u16()?,
                    });
                }
                for _ in 0..r.u16()? {
                    d.routes.push(Route {
                        prefix: r.ip()?,
                        plen: r.u8()?,
                        metric: r.u16()?,
                        smoothed_metric: r.u16()?,
                        refmetric: r.u16()?,
                        id: r.take(8)?.try_into().map_err(|_| CtlError::Truncated)?,
                        seqno: r.u32()? as i32,
                        age: r.u32()? as i32,
                        ifindex: r.u32()?,
                        neigh_address: r.ip()?,
                        nexthop: r.ip()?,
                        flags: r.u8()?,
                    });
                }
                Ok(Response::Dump(d))
            }
            k => Err(CtlError::UnknownType(k)),
        }
    }
}

fn count(b: &mut Vec<u8>, n: usize) -> Result<(), CtlError> {
    let n16 = u16::try_from(n).map_err(|_| CtlError::TooMany(n))?;
    b.extend_from_slice(&n16.to_be_bytes());
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CtlError> {
        if self.0.len() < n {
            return Err(CtlError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, CtlError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CtlError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, CtlError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn ip(&mut self) -> Result<Ipv6Addr, CtlError> {
        let b: [u8; 16] = self.take(16)?.try_into().map_err(|_| CtlError::Truncated)?;
        Ok(Ipv6Addr::from(b))
    }
    fn string(&mut self) -> Result<String, CtlError> {
        let end = self
            .0
            .iter()
            .position(|&c| c == 0)
            .ok_or(CtlError::Truncated)?;
        let s = std::str::from_utf8(&self.0[..end]).map_err(|_| CtlError::Utf8)?;
        self.0 = &self.0[end + 1..];
        Ok(s.to_owned())
    }
}

/// babeld's router id as printed by its text interface (`02:aa:...:ff`).
pub fn parse_router_id(s: &str) -> Option<[u8; 8]> {
    let mut id = [0u8; 8];
    let mut parts = s.split(':');
    for b in id.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Dump {
        Dump {
            interfaces: vec![Interface {
                index: 7,
                name: "re6stnet1".into(),
            }],
            neighbours: vec![Neighbour {
                address: "fe80::2".parse().unwrap(),
                ifindex: 7,
                reach: 0xffff,
                rxcost: 96,
                txcost: 96,
                rtt: 0,
                rttcost: 0,
                channel: -2,
                if_up: 1,
                cost_multiplier: 256,
            }],
            xroutes: vec![XRoute {
                prefix: "2001:db8:1::".parse().unwrap(),
                plen: 48,
                metric: 0,
            }],
            routes: vec![Route {
                prefix: "2001:db8:2::".parse().unwrap(),
                plen: 48,
                metric: 96,
                smoothed_metric: 96,
                refmetric: 0,
                id: [2, 0, 0, 0, 0, 0, 0, 9],
                seqno: 3,
                age: 1,
                ifindex: 7,
                neigh_address: "fe80::2".parse().unwrap(),
                nexthop: "fe80::2".parse().unwrap(),
                flags: ROUTE_INSTALLED,
            }],
        }
    }

    #[test]
    fn dump_round_trip() {
        let bytes = Response::Dump(sample()).encode().unwrap();
        let (kind, len) = header(&bytes).unwrap();
        assert_eq!((kind, len as usize), (DUMP, bytes.len() - HEADER_LEN));
        assert_eq!(
            Response::decode(kind, &bytes[HEADER_LEN..]).unwrap(),
            Response::Dump(sample())
        );
        // Every truncation is an error, never a panic.
        for n in 0..bytes.len() - HEADER_LEN {
            assert!(Response::decode(kind, &bytes[HEADER_LEN..HEADER_LEN + n]).is_err());
        }
    }

    /// Found by fuzzing (babel_text): an interface name with a NUL, as
    /// stock babeld's text protocol can carry it, ended the name early
    /// on the wire and the rest of the dump no longer decoded.
    #[test]
    fn interface_name_with_nul_is_refused() {
        let mut d = sample();
        d.interfaces[0].name = "r\u{0}6st".into();
        assert_eq!(
            Response::Dump(d).encode(),
            Err(CtlError::Nul("r\u{0}6st".into()))
        );
    }

    #[test]
    fn requests_split_off_a_stream() {
        let mut stream = Request::Dump { flags: 11 }.encode();
        let set = Request::SetCostMultiplier {
            address: "fe80::2".parse().unwrap(),
            ifindex: 7,
            multiplier: 4096,
        };
        stream.extend(set.encode());
        // Upstream's Dump(11): type 1, length 1, flags 11.
        assert_eq!(&stream[..7], b"\0\x01\0\0\0\x01\x0b");
        for n in 0..7 {
            assert_eq!(Request::decode(&stream[..n]), Ok(None));
        }
        let (r, used) = Request::decode(&stream).unwrap().unwrap();
        assert_eq!((r, used), (Request::Dump { flags: 11 }, 7));
        let (r, used2) = Request::decode(&stream[used..]).unwrap().unwrap();
        assert_eq!(r, set);
        assert_eq!(used + used2, stream.len());
        assert_eq!(
            Request::decode(b"\0\x09\0\0\0\x01\0"),
            Err(CtlError::UnknownType(9))
        );
        assert_eq!(
            Request::decode(b"\0\x01\xff\0\0\0"),
            Err(CtlError::TooLong(0xff00_0000))
        );
        // A body longer than its type needs: the rest is skipped, the
        // framing holds (found by fuzzing).
        assert_eq!(
            Request::decode(b"\0\x01\0\0\0\x03\x0b\xfe\xff\0\x01"),
            Ok(Some((Request::Dump { flags: 11 }, 9)))
        );
        // A body too short for its type.
        assert_eq!(
            Request::decode(b"\0\x02\0\0\0\x01\0"),
            Err(CtlError::Truncated)
        );
    }

    #[test]
    fn router_ids() {
        assert_eq!(
            parse_router_id("02:16:3e:ff:fe:00:00:09"),
            Some([2, 0x16, 0x3e, 0xff, 0xfe, 0, 0, 9])
        );
        assert_eq!(parse_router_id("02:16"), None);
        assert_eq!(parse_router_id("02:16:3e:ff:fe:00:00:09:01"), None);
        assert_eq!(parse_router_id("zz:16:3e:ff:fe:00:00:09"), None);
    }
}
