//! UPnP IGD port mappings (igd-next): our IPv4 servers' ports mapped on
//! the home router, renewed before their lease ends, removed when we stop.
//! Runs as its own task so that a slow or absent gateway never holds up
//! the node; the mappings reach the node through a watch channel.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use igd_next::aio::tokio::{search_gateway, Tokio};
use igd_next::aio::Gateway;
use igd_next::{AddPortError, PortMappingProtocol, SearchOptions};
use re6st_proto::address::Proto;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::advertised::Mapping;
use crate::daemon::log::log;

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
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Upnp {
    /// Starts mapping `servers` (IPv4 OpenVPN servers).
    pub fn start(
        servers: Vec<(u16, Proto)>,
        verbose: u8,
    ) -> (Upnp, watch::Receiver<Option<Mapping>>) {
        let (tx, rx) = watch::channel(None);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(Forwarder::new(servers, verbose), tx, stopped));
        (Upnp { stop, task }, rx)
    }

    /// Removes the mappings (waiting a few seconds at most) and stops.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

async fn run(
    mut f: Forwarder,
    tx: watch::Sender<Option<Mapping>>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let next = match f.refresh().await {
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
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = &mut stopped => break,
        }
    }
    f.clear().await;
}

struct Forwarder {
    servers: Vec<(u16, Proto)>,
    gateway: Option<(Gateway<Tokio>, Ipv4Addr)>,
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
    async fn discover() -> Result<(Gateway<Tokio>, Ipv4Addr), String> {
        let mut options = SearchOptions::default();
        options.timeout = Some(Duration::from_secs(3));
        options.single_search_timeout = Some(Duration::from_secs(3));
        let gw = search_gateway(options)
            .await
            .map_err(|e| format!("no Internet gateway device: {e}"))?;
        // The address the gateway must forward to: the one our packets to
        // it leave from.
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        probe.connect(gw.addr).map_err(|e| e.to_string())?;
        match probe.local_addr().map_err(|e| e.to_string())?.ip() {
            IpAddr::V4(ip) => Ok((gw, ip)),
            IpAddr::V6(_) => Err("the gateway is not reachable over IPv4".into()),
        }
    }

    /// Maps (or renews) every port; the mapping as the gateway granted it.
    async fn refresh(&mut self) -> Result<Mapping, String> {
        if self.gateway.is_none() {
            self.gateway = Some(Self::discover().await?);
        }
        let result = self.map_all().await;
        if result.is_err() {
            // Maybe another gateway now (or it rebooted): search again.
            self.gateway = None;
        }
        result
    }

    async fn map_all(&mut self) -> Result<Mapping, String> {
        let (gw, local) = self.gateway.as_ref().ok_or("no gateway")?;
        let external_ip = match gw.get_external_ip().await {
            Ok(IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
            Ok(ip) => return Err(format!("the gateway has no usable external address ({ip})")),
            Err(e) => return Err(format!("external address: {e}")),
        };
        for (port, proto) in self.servers.clone() {
            let desc = format!("re6stnet openvpn server ({port}/{proto})");
            let local_addr = SocketAddr::new(IpAddr::V4(*local), port);
            // The port we had, else ours, else random ones.
            let mut external = self.mapped.get(&(port, proto)).copied().unwrap_or(port);
            let mut tries = 0;
            loop {
                match gw
                    .add_port(protocol(proto), external, local_addr, self.lease, &desc)
                    .await
                {
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
                    Err(e) => return Err(format!("mapping {desc}: {e}")),
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

    async fn clear(&mut self) {
        if let Some((gw, _)) = &self.gateway {
            for ((_, proto), external) in std::mem::take(&mut self.mapped) {
                let _ = gw.remove_port(protocol(proto), external).await;
            }
        }
    }
}
