//! `re6st lan`: advertises the router's LAN /64 (from its re6st subnet) on
//! the LAN interface, so that hosts there get addresses by SLAAC and reach
//! the overlay through us. The node itself runs with `-I LAN` so that its
//! re6st address, and the route to its whole subnet, are on that interface.

use std::ffi::OsString;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use openssl::x509::X509;
use re6st_proto::cert::{self, CertError};
use re6st_proto::prefix::PrefixError;
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;
use tokio::io::unix::AsyncFd;

use super::ra::{self, Advert};

/// Why `re6st lan` cannot advertise.
#[derive(Debug, Error)]
enum LanError {
    #[error("{0}: {1}")]
    Read(String, #[source] std::io::Error),
    #[error("{0}: {1}")]
    Pem(&'static str, #[source] openssl::error::ErrorStack),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    #[error("our subnet {0} is longer than /64: no room for SLAAC")]
    SubnetTooLong(String),
    #[error("at most {} --dns servers", ra::MAX_RDNSS)]
    TooManyDns,
    #[error("signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("the farewell advertisement: {0}")]
    Farewell(#[source] std::io::Error),
}

#[derive(Parser, Debug)]
#[command(
    name = "re6st lan",
    about = "Router advertisements of our re6st /64 on the LAN"
)]
struct Options {
    /// LAN interface.
    #[arg(short = 'i', long)]
    interface: String,
    /// The network's CA certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Our certificate (its CN is our subnet).
    #[arg(long)]
    cert: PathBuf,
    /// Recursive DNS servers to advertise (RDNSS, up to 3).
    #[arg(long = "dns")]
    dns: Vec<Ipv6Addr>,
    /// Link MTU to advertise.
    #[arg(long)]
    mtu: Option<u32>,
    /// Seconds between unsolicited advertisements.
    #[arg(long, default_value_t = 60)]
    interval: u64,
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let o = match Options::try_parse_from(args) {
        Ok(o) => o,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let advert = match advert(&o) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("re6st lan: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("re6st lan: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&o, advert)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("re6st lan: {e}");
            ExitCode::FAILURE
        }
    }
}

fn advert(o: &Options) -> Result<Advert, LanError> {
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| LanError::Read(p.display().to_string(), e));
    let ca = X509::from_pem(&read(&o.ca)?).map_err(|e| LanError::Pem("CA", e))?;
    let mine = X509::from_pem(&read(&o.cert)?).map_err(|e| LanError::Pem("certificate", e))?;
    let network = cert::network_from_ca(&ca)?;
    let prefix = cert::node_prefix(&mine)?;
    let subnet = network.concat(&prefix)?;
    let lan = ra::lan_prefix(&subnet)
        .ok_or_else(|| LanError::SubnetTooLong(format!("{}/{}", subnet.to_ipv6(), subnet.len())))?;
    if o.dns.len() > ra::MAX_RDNSS {
        return Err(LanError::TooManyDns);
    }
    let mut a = Advert::new(lan);
    a.rdnss = o.dns.clone();
    a.mtu = o.mtu;
    a.source_mac = mac(&o.interface);
    Ok(a)
}

fn mac(iface: &str) -> Option<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok()?;
    let mut m = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in m.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    Some(m)
}

/// A raw ICMPv6 socket sending on `iface` with hop limit 255 (hosts drop
/// advertisements with any other) and hearing router solicitations.
fn open(iface: &str) -> std::io::Result<(AsyncFd<Socket>, u32)> {
    let index = nix::net::if_::if_nametoindex(iface).map_err(std::io::Error::from)?;
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.set_multicast_if_v6(index)?;
    s.set_multicast_hops_v6(255)?;
    s.set_unicast_hops_v6(255)?;
    s.set_multicast_loop_v6(false)?;
    s.bind_device(Some(iface.as_bytes()))?;
    s.join_multicast_v6(&"ff02::2".parse().expect("all-routers"), index)?;
    s.set_nonblocking(true)?;
    // SAFETY: the AsyncFd owns the socket, which keeps its one descriptor
    // open until the AsyncFd is dropped.
    let fd = unsafe { AsyncFd::register(s) }.map_err(std::io::Error::from)?;
    Ok((fd, index))
}

async fn send(fd: &AsyncFd<Socket>, index: u32, msg: &[u8]) -> std::io::Result<()> {
    let to = SocketAddrV6::new("ff02::1".parse().expect("all-nodes"), 0, 0, index);
    loop {
        let mut guard = fd.writable().await?;
        match guard.try_io(|s| s.get_ref().send_to(msg, &to.into())) {
            Ok(r) => return r.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}

async fn run(o: &Options, advert: Advert) -> Result<(), LanError> {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(LanError::Signals)?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(LanError::Signals)?;
    // The LAN interface may not be there yet at boot.
    let (fd, index) = loop {
        match open(&o.interface) {
            Ok(x) => break x,
            Err(e) => {
                eprintln!("re6st lan: {}: {e}; retrying", o.interface);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = sigterm.recv() => return Ok(()),
                    _ = sigint.recv() => return Ok(()),
                }
            }
        }
    };
    eprintln!(
        "re6st lan: advertising {}/64 on {}",
        advert.prefix, o.interface
    );
    let msg = advert.encode();
    // A few quick advertisements first (RFC 4861 6.2.4), then the interval.
    let mut sent = 0u32;
    let mut buf = [0u8; 1500];
    loop {
        if let Err(e) = send(&fd, index, &msg).await {
            eprintln!("re6st lan: sending on {}: {e}", o.interface);
        }
        sent += 1;
        let wait = if sent <= 3 {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(o.interval)
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = sigterm.recv() => return farewell(&fd, index, &advert).await,
                _ = sigint.recv() => return farewell(&fd, index, &advert).await,
                r = fd.readable() => {
                    let Ok(mut guard) = r else { continue };
                    let solicited = match guard.try_io(|s| {
                        use std::io::Read;
                        s.get_ref().read(&mut buf)
                    }) {
                        Ok(Ok(n)) => ra::is_solicitation(&buf[..n]),
                        _ => false,
                    };
                    if solicited {
                        // Answer soon (RFC 4861 allows up to 0.5 s of
                        // delay), so at most two answers per second.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                }
            }
        }
    }
}

async fn farewell(fd: &AsyncFd<Socket>, index: u32, advert: &Advert) -> Result<(), LanError> {
    send(fd, index, &advert.farewell().encode())
        .await
        .map_err(LanError::Farewell)
}
