//! Upstream's babeld control protocol, served by our node on
//! `RUN/babeld.sock` so that upstream's registry (and anything else written
//! for re6st's patched babeld) can run beside our node and stock babeld.
//!
//! Each dump request is answered from a fresh `dump` of stock babeld's
//! text socket. Stock babeld has no per-neighbour cost multiplier (we
//! drain tunnels by silencing babel on them instead), so `SetCostMultiplier` requests
//! are refused by closing the connection.

use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use re6st_proto::babel_ctl::{self, CtlError, Dump, Request, Response};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::client::{BabelClient, ClientError};
use super::control::Line;

/// A neutral cost multiplier: patched babeld's "no change" value.
const NEUTRAL_MULTIPLIER: u16 = 256;

fn v6((addr, len): (IpAddr, u8)) -> (Ipv6Addr, u8) {
    match addr {
        IpAddr::V6(a) => (a, len),
        IpAddr::V4(a) => (a.to_ipv6_mapped(), len.saturating_add(96)),
    }
}

fn clamp16(v: u32) -> u16 {
    v.min(u32::from(u16::MAX)) as u16
}

/// Upstream's dump, from the lines of stock babeld's `dump`, keeping the
/// sections `flags` asks for. `ifindex` maps an interface name to its
/// index; entries on interfaces without one are left out.
pub fn translate(lines: &[Line], flags: u8, ifindex: impl Fn(&str) -> Option<u32>) -> Dump {
    let mut d = Dump::default();
    let mut up = std::collections::BTreeMap::new();
    for l in lines {
        if let Line::Interface { name, up: u, .. } = l {
            up.insert(name.clone(), *u);
        }
    }
    for l in lines {
        match l {
            Line::Interface { name, .. } if flags & babel_ctl::DUMP_INTERFACES != 0 => {
                if let Some(index) = ifindex(name) {
                    d.interfaces.push(babel_ctl::Interface {
                        index,
                        name: name.clone(),
                    });
                }
            }
            Line::Neighbour {
                neighbour: Some(n), ..
            } if flags & babel_ctl::DUMP_NEIGHBOURS != 0 => {
                let (IpAddr::V6(address), Some(index)) = (n.address, ifindex(&n.interface)) else {
                    continue;
                };
                d.neighbours.push(babel_ctl::Neighbour {
                    address,
                    ifindex: index,
                    reach: n.reach,
                    rxcost: clamp16(n.rxcost),
                    txcost: clamp16(n.txcost),
                    rtt: 0,
                    rttcost: 0,
                    channel: 0,
                    if_up: u16::from(up.get(&n.interface).copied().unwrap_or(true)),
                    cost_multiplier: NEUTRAL_MULTIPLIER,
                });
            }
            Line::Route { route: Some(r), .. }
                if flags & babel_ctl::DUMP_ROUTES != 0 && r.installed =>
            {
                let (IpAddr::V6(via), Some(index)) = (r.via, ifindex(&r.interface)) else {
                    continue;
                };
                let (prefix, plen) = v6(r.prefix);
                d.routes.push(babel_ctl::Route {
                    prefix,
                    plen,
                    metric: clamp16(r.metric),
                    smoothed_metric: clamp16(r.metric),
                    refmetric: clamp16(r.refmetric),
                    id: babel_ctl::parse_router_id(&r.router_id).unwrap_or_default(),
                    seqno: 0,
                    age: 0,
                    ifindex: index,
                    neigh_address: via,
                    nexthop: via,
                    flags: babel_ctl::ROUTE_INSTALLED,
                });
            }
            _ => {}
        }
    }
    d
}

fn system_ifindex(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// Serves upstream's protocol on `path`, answering from stock babeld at
/// `babel_socket`, until the task is dropped.
pub async fn serve(path: PathBuf, babel_socket: PathBuf) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let babel_socket = babel_socket.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &babel_socket).await {
                tracing::info!("babeld.sock client: {e}");
            }
        });
    }
}

/// How long a client may keep us waiting for its next bytes.
const IDLE: Duration = Duration::from_secs(300);

async fn read_some(s: &mut UnixStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 512];
    let n = tokio::time::timeout(IDLE, s.read(&mut chunk))
        .await
        .map_err(|_| std::io::Error::other("idle client"))??;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// Why a client's connection was closed.
#[derive(Debug, Error)]
enum ConnectionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("protocol version {0} unknown")]
    Version(u8),
    #[error(transparent)]
    Protocol(#[from] CtlError),
    #[error("cost multipliers are not supported with stock babeld")]
    CostMultiplier,
    #[error("babeld: {0}")]
    Babeld(#[from] ClientError),
}

async fn connection(mut s: UnixStream, babel_socket: &Path) -> Result<(), ConnectionError> {
    let mut buf = Vec::new();
    while buf.is_empty() {
        if !read_some(&mut s, &mut buf).await? {
            return Ok(());
        }
    }
    if buf[0] != babel_ctl::VERSION {
        return Err(ConnectionError::Version(buf[0]));
    }
    buf.remove(0);
    loop {
        match Request::decode(&buf)? {
            None => {
                if !read_some(&mut s, &mut buf).await? {
                    return Ok(());
                }
            }
            Some((req, used)) => {
                buf.drain(..used);
                let Request::Dump { flags } = req else {
                    return Err(ConnectionError::CostMultiplier);
                };
                let mut babel = BabelClient::connect(babel_socket, Duration::from_secs(5)).await?;
                let lines = babel.dump().await?;
                let bytes = Response::Dump(translate(&lines, flags, system_ifindex)).encode()?;
                s.write_all(&bytes).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::control::parse_line;
    use super::*;

    /// Found by fuzzing (babel_text, minimized): a NUL in an interface
    /// name of babeld's text dump made the shim send a dump whose framing
    /// was broken; it is now an error.
    #[test]
    fn interface_name_with_nul_is_an_error() {
        let lines = [parse_line("add interface r\u{0}6st").unwrap()];
        let d = translate(&lines, 0xff, |_| Some(1));
        assert!(matches!(
            Response::Dump(d).encode(),
            Err(babel_ctl::CtlError::Nul(_))
        ));
    }

    #[test]
    fn stock_dump_becomes_upstream_dump() {
        let lines: Vec<Line> = [
            "add interface re6stnet1 up true ipv6 fe80::1",
            "add neighbour n1 address fe80::2 if re6stnet1 reach fff0 ureach 0000 rxcost 96 txcost 100 rtt 0.2 rttcost 0 cost 96",
            "add neighbour n2 address fe80::3 if gone reach ffff rxcost 96 txcost 96 cost 96",
            "add route r1 prefix 2001:db8:2::/48 from ::/0 installed yes id 02:00:00:00:00:00:00:09 metric 96 refmetric 0 via fe80::2 if re6stnet1",
            "add route r2 prefix 2001:db8:3::/48 from ::/0 installed no id 02:00:00:00:00:00:00:0a metric 300 refmetric 200 via fe80::2 if re6stnet1",
            "add route r3 prefix 10.42.0.0/16 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:09 metric 70000 refmetric 0 via fe80::2 if re6stnet1",
        ]
        .iter()
        .map(|l| parse_line(l).unwrap())
        .collect();
        let idx = |n: &str| (n == "re6stnet1").then_some(7);
        let d = translate(&lines, 11, idx);
        assert_eq!(d.interfaces.len(), 1);
        assert_eq!(
            d.neighbours.len(),
            1,
            "the neighbour on a vanished interface is left out"
        );
        assert_eq!(d.neighbours[0].reach, 0xfff0);
        assert_eq!(d.neighbours[0].txcost, 100);
        assert_eq!(d.routes.len(), 2, "only installed routes");
        assert_eq!(d.routes[0].id, [2, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(d.routes[0].nexthop, d.routes[0].neigh_address);
        assert_eq!(
            (
                d.routes[1].prefix.to_string().as_str(),
                d.routes[1].plen,
                d.routes[1].metric
            ),
            ("::ffff:10.42.0.0", 112, u16::MAX)
        );
        let d = translate(&lines, babel_ctl::DUMP_ROUTES, idx);
        assert!(d.interfaces.is_empty() && d.neighbours.is_empty());
        assert_eq!(d.routes.len(), 2);
    }
}
