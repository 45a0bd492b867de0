//! UPnP IGD port mappings (igd-next): our IPv4 servers' ports mapped on
//! the home router, renewed before their lease ends, removed when we stop.
//! Runs on its own thread so that a slow or absent gateway never holds up
//! the node; the mappings reach the node through a watch channel.
//!
//! igd-next's blocking API is used (every request has a timeout): its
//! tokio API brings hyper's HTTP/2 client along, about 250 KB of the
//! router binary for talking HTTP/1.1 to a home router.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use igd_next::{
    search_gateway, AddPortError, Gateway, GetExternalIpError, PortMappingProtocol, SearchError,
    SearchOptions,
};
use re6st_proto::address::Proto;
use thiserror::Error;
use tokio::sync::{oneshot, watch};

use super::advertised::Mapping;
use crate::daemon::log::log;

/// Why no mapping now (said at -v 2; tried again in a minute).
#[derive(Debug, Error)]
enum UpnpError {
    #[error("no Internet gateway device: {0}")]
    NoGateway(#[source] SearchError),
    #[error("finding our address towards the gateway: {0}")]
    OurAddress(#[source] std::io::Error),
    #[error("the gateway is not reachable over IPv4")]
    NotIpv4,
    #[error("the gateway has no usable external address ({0})")]
    NoExternalAddress(IpAddr),
    #[error("external address: {0}")]
    ExternalAddress(#[source] GetExternalIpError),
    #[error("mapping {0}: {1}")]
    Mapping(String, #[source] AddPortError),
}

/// Lease asked for each mapping: a node that dies without cleaning up
/// does not leave ports open for ever.
const LEASE: u32 = 3600;
/// Mappings are renewed well before their lease ends.
const RENEW: Duration = Duration::from_secs(600);
/// Without a gateway (or after an error), how long before trying again.
const RETRY: Duration = Duration::from_secs(60);
/// External ports tried when ours is taken (as upstream: 32768–49151).
const RANDOM_PORTS: std::ops::RangeInclusive<u16> = 32768..=49151;
const TRIES: usize = 16;

pub struct Upnp {
    /// Dropped to stop the thread.
    stop: mpsc::Sender<()>,
    /// Fired by the thread once it has removed its mappings.
    done: oneshot::Receiver<()>,
}

impl Upnp {
    /// Starts mapping `servers` (IPv4 OpenVPN servers).
    pub fn start(
        servers: Vec<(u16, Proto)>,
        verbose: u8,
    ) -> (Upnp, watch::Receiver<Option<Mapping>>) {
        let (tx, rx) = watch::channel(None);
        let (stop, stopped) = mpsc::channel();
        let (done_tx, done) = oneshot::channel();
        let f = Forwarder::new(servers, verbose);
        // Detached: a gateway that never answers must not keep the
        // process from exiting.
        let spawned = std::thread::Builder::new()
            .name("upnp".into())
            .spawn(move || {
                run(f, tx, stopped);
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            log(1, verbose, format!("UPnP: cannot start its thread: {e}"));
        }
        (Upnp { stop, done }, rx)
    }

    /// Removes the mappings (waiting a few seconds at most) and stops.
    pub async fn stop(self) {
        drop(self.stop);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.done).await;
    }
}

fn run(mut f: Forwarder, tx: watch::Sender<Option<Mapping>>, stopped: mpsc::Receiver<()>) {
    loop {
        let next = match f.refresh() {
            Ok(m) => {
                tx.send_if_modified(|old| {
                    let changed = old.as_ref() != Some(&m);
                    *old = Some(m);
                    changed
                });
                RENEW
            }
            Err(e) => {
                log(2, f.verbose, format!("UPnP: {e}"));
                tx.send_if_modified(|old| old.take().is_some());
                RETRY
            }
        };
        if stopped.recv_timeout(next) != Err(mpsc::RecvTimeoutError::Timeout) {
            break;
        }
    }
    f.clear();
}

struct Forwarder {
    servers: Vec<(u16, Proto)>,
    gateway: Option<(Gateway, Ipv4Addr)>,
    lease: u32,
    /// (our port, protocol) → external port, as last granted.
    mapped: BTreeMap<(u16, Proto), u16>,
    verbose: u8,
}

fn protocol(p: Proto) -> PortMappingProtocol {
    if p.is_tcp() {
        PortMappingProtocol::TCP
    } else {
        PortMappingProtocol::UDP
    }
}

fn random_port() -> u16 {
    let mut b = [0u8; 2];
    let _ = openssl::rand::rand_bytes(&mut b);
    let span = RANDOM_PORTS.end() - RANDOM_PORTS.start() + 1;
    RANDOM_PORTS.start() + u16::from_be_bytes(b) % span
}

impl Forwarder {
    fn new(servers: Vec<(u16, Proto)>, verbose: u8) -> Forwarder {
        Forwarder {
            servers,
            gateway: None,
            lease: LEASE,
            mapped: BTreeMap::new(),
            verbose,
        }
    }

    /// Finds the gateway and our address on its side.
    fn discover() -> Result<(Gateway, Ipv4Addr), UpnpError> {
        let mut options = SearchOptions::default();
        options.timeout = Some(Duration::from_secs(3));
        options.single_search_timeout = Some(Duration::from_secs(3));
        let gw = search_gateway(options).map_err(UpnpError::NoGateway)?;
        // The address the gateway must forward to: the one our packets to
        // it leave from.
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").map_err(UpnpError::OurAddress)?;
        probe.connect(gw.addr).map_err(UpnpError::OurAddress)?;
        match probe.local_addr().map_err(UpnpError::OurAddress)?.ip() {
            IpAddr::V4(ip) => Ok((gw, ip)),
            IpAddr::V6(_) => Err(UpnpError::NotIpv4),
        }
    }

    /// Maps (or renews) every port; the mapping as the gateway granted it.
    fn refresh(&mut self) -> Result<Mapping, UpnpError> {
        let (gw, local) = match self.gateway.take() {
            Some(g) => g,
            None => Self::discover()?,
        };
        let result = self.map_all(&gw, local);
        if result.is_ok() {
            // Else maybe another gateway now (or it rebooted): search again.
            self.gateway = Some((gw, local));
        }
        result
    }

    fn map_all(&mut self, gw: &Gateway, local: Ipv4Addr) -> Result<Mapping, UpnpError> {
        let external_ip = match gw.get_external_ip() {
            Ok(IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
            Ok(ip) => return Err(UpnpError::NoExternalAddress(ip)),
            Err(e) => return Err(UpnpError::ExternalAddress(e)),
        };
        for (port, proto) in self.servers.clone() {
            let desc = format!("re6stnet openvpn server ({port}/{proto})");
            let local_addr = SocketAddr::new(IpAddr::V4(local), port);
            // The port we had, else ours, else random ones.
            let mut external = self.mapped.get(&(port, proto)).copied().unwrap_or(port);
            let mut tries = 0;
            loop {
                match gw.add_port(protocol(proto), external, local_addr, self.lease, &desc) {
                    Ok(()) => break,
                    Err(AddPortError::OnlyPermanentLeasesSupported) if self.lease != 0 => {
                        self.lease = 0;
                    }
                    Err(AddPortError::SamePortValuesRequired) if external != port => {
                        external = port;
                    }
                    Err(AddPortError::PortInUse) if tries < TRIES => {
                        tries += 1;
                        external = random_port();
                    }
                    Err(e) => return Err(UpnpError::Mapping(desc, e)),
                }
            }
            if self.mapped.insert((port, proto), external) != Some(external) {
                log(
                    2,
                    self.verbose,
                    format!("UPnP: {external_ip}:{external}/{proto} forwarded to {local}:{port}"),
                );
            }
        }
        Ok(Mapping {
            external_ip,
            ports: self.mapped.clone(),
        })
    }

    fn clear(&mut self) {
        if let Some((gw, _)) = &self.gateway {
            for ((_, proto), external) in std::mem::take(&mut self.mapped) {
                let _ = gw.remove_port(protocol(proto), external);
            }
        }
    }
}
