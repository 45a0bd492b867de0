//! The node as the event loop holds it: what the shell keeps beside the
//! core (the peer link, children, the registry client, our addresses),
//! and how each effect of the core is carried out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openssl::pkey::PKey;
use openssl::x509::X509;
use re6st_proto::cert;
use re6st_proto::netconfig::NetworkConfig;
use re6st_proto::peer::Identity;
use re6st_proto::prefix::Prefix;
use re6st_registry_client::client::RegistryClient;
use tokio::net::UdpSocket;
use tokio::process::Child;
use tokio::sync::mpsc;

use super::clock::{clock, now};
use super::log::log;
use super::options::Options;
use super::renewal;
use super::tasks::{self, Done, KernelJob, Renewed};
use crate::babel::kernel_check::KernelCheck;
use crate::kernel::{self, Addr, NetOp};
use crate::nat::advertised::{Advertised, Mapping};
use crate::openvpn::args::Common;
use crate::openvpn::hook::Event;
use crate::openvpn::management;
use crate::state::{netconfig as netconfig_cache, peers as peers_file};
use crate::underlay::RemoteGateways;
use re6st_node_core::node::servers::Renewed as CoreRenewed;
use re6st_node_core::node::{Effect, Input, NodeCore};

pub(super) struct Node {
    pub(super) o: Options,
    pub(super) network: Prefix,
    pub(super) prefix: Prefix,
    pub(super) babel_socket: PathBuf,
    pub(super) common: Common,
    pub(super) clients: BTreeMap<Prefix, Child>,
    /// Shared with the tasks that call the registry (one call at a time).
    pub(super) registry: Arc<tokio::sync::Mutex<RegistryClient>>,
    /// Where tasks report what they did (the loop's only other input).
    pub(super) done: mpsc::UnboundedSender<Done>,
    /// Lines for babeld, sent in order by one task.
    pub(super) babel_commands: mpsc::UnboundedSender<Vec<String>>,
    /// Kernel work, carried out in order by one task.
    pub(super) kernel_jobs: mpsc::UnboundedSender<KernelJob>,
    /// The node's decisions (and the tunnel manager).
    pub(super) core: NodeCore,
    /// `re6st ctl status` dumps under way.
    pub(super) status_dumps: usize,
    pub(super) client_count: usize,
    /// For the status command.
    pub(super) cert_not_after: i64,
    pub(super) my_ip: std::net::Ipv6Addr,
    pub(super) ca: X509,
    /// Our OpenVPN servers' interfaces (their management sockets are named
    /// after them).
    pub(super) server_ifaces: Vec<String>,
    pub(super) my_cert: X509,
    pub(super) key: PKey<openssl::pkey::Private>,
    /// `--client`: the addresses of our one tunnel, and its OpenVPN.
    pub(super) client_mode: Option<Vec<(String, u16, re6st_proto::address::Proto)>>,
    pub(super) client_mode_child: Option<Child>,
    /// What we announce to peers, and how it is learned.
    pub(super) advertised: Advertised,
    /// Our IPv4 payload address and subnet length, if the network has one.
    pub(super) ipv4: Option<(std::net::Ipv4Addr, u8)>,
    /// Our country (`--country`, or the registry's GeoIP).
    pub(super) country: Option<String>,
    /// `--remote-gateway`, and the peer address each client tunnel uses.
    pub(super) remote_gateways: RemoteGateways,
    pub(super) tunnel_peers: BTreeMap<Prefix, std::net::IpAddr>,
    pub(super) kernel_check: KernelCheck,
}

/// How long a revoked peer keeps its tunnel to our servers after we
/// announced the revoking version to it (see `Node::drop_served`).
const REVOKED_DROP_DELAY: Duration = Duration::from_secs(1);

impl Drop for Node {
    /// The routes to tunnel peers through `--remote-gateway`s go with the
    /// node, whatever way `run_node` returns.
    fn drop(&mut self) {
        kernel::apply_logged(&self.remote_gateways.clear(), self.o.verbose);
    }
}

impl Node {
    /// Gives the core an input, with the time now.
    pub(super) fn handle(&mut self, input: Input) {
        self.core.handle(input, clock());
    }

    /// Carries out what the core decided (but starting babeld and
    /// answering hooks, which `run_node` does with what it holds).
    pub(super) async fn carry_out(&mut self, effect: Effect, udp: &UdpSocket) {
        match effect {
            Effect::Log { level, message } => log(level, self.o.verbose, message),
            Effect::PeerSawUs(ip) => self.peer_saw(&ip),
            Effect::DumpBabel => self.request_dump(),
            Effect::AskBootstrap => {
                let (registry, done) = (self.registry.clone(), self.done.clone());
                tokio::spawn(async move {
                    let answer = registry.lock().await.bootstrap_peer().await;
                    let _ = done.send(Done::Bootstrap(answer));
                });
            }
            Effect::FetchConfig => self.fetch_config(),
            Effect::CheckRenewal => self.check_renewal(),
            Effect::CompareKernelRoutes => self.check_kernel_routes(),
            Effect::SaveCache => self.save_cache(),
            Effect::UseNewCert => self.use_new_cert(),
            Effect::UseConfig(new) => self.use_config(&new),
            Effect::SendDatagram { to, data } => {
                let _ = udp.send_to(&data, to).await;
            }
            Effect::TellBabel(lines) => self.tell_babel(&lines),
            Effect::ExchangeTables { iface, remove, add } => {
                let addr = |ip: std::net::Ipv4Addr| Addr {
                    ip: ip.into(),
                    len: 32,
                    dev: iface.clone(),
                };
                // The new one first: babeld then sees one change, not two.
                let mut ops = vec![NetOp::AddrAdd(addr(add))];
                ops.extend(remove.map(|r| NetOp::AddrDel(addr(r))));
                self.kernel(KernelJob::Apply(ops));
            }
            Effect::StartTunnel {
                prefix,
                iface,
                address,
            } => self.start_tunnel(prefix, &iface, address),
            Effect::StopTunnel { prefix, iface } => {
                self.stop_tunnel(prefix);
                self.kernel(KernelJob::ForgetBabelRoutes(iface));
            }
            Effect::HoldRoutes { iface, hold } => self.kernel(KernelJob::Hold { iface, hold }),
            Effect::MuteBabel { iface, mute } => self.kernel(KernelJob::Mute { iface, mute }),
            // Carried out by `run_node`, with the children it holds.
            Effect::StartBabeld
            | Effect::AnswerHook { .. }
            | Effect::CheckServers
            | Effect::RestartServers
            | Effect::RestartBabeld
            | Effect::DropServed(_)
            | Effect::Reexec => {}
        }
    }

    /// Writes the core's log lines, at the end (nothing else is carried
    /// out any more).
    pub(super) fn flush_logs(&mut self) {
        while let Some(effect) = self.core.poll_effect() {
            if let Effect::Log { level, message } = effect {
                log(level, self.o.verbose, message);
            }
        }
    }

    /// Saves the peer cache in a task (atomically: a failed write leaves
    /// the previous file; a flash write can take a while); the core says
    /// what of it to log.
    pub(super) fn save_cache(&mut self) {
        let (cache, done) = (self.core.manager().cache().clone(), self.done.clone());
        let path = self.o.state.join("peers.bin");
        tokio::task::spawn_blocking(move || {
            let saved = peers_file::save(&cache, &path).map_err(|e| e.to_string());
            let _ = done.send(Done::CacheSaved(saved));
        });
    }

    /// The last save, as the node stops (nothing waits on the loop then).
    pub(super) fn save_cache_now(&mut self) {
        let saved = self.core.manager().cache();
        let saved =
            peers_file::save(saved, &self.o.state.join("peers.bin")).map_err(|e| e.to_string());
        self.handle(Input::CacheSaved(saved));
    }

    /// Hands kernel work to the task that carries it out in order.
    pub(super) fn kernel(&self, job: KernelJob) {
        let _ = self.kernel_jobs.send(job);
    }

    /// New port mappings on the gateway (or none any more).
    pub(super) fn set_mapping(&mut self, m: Option<Mapping>) {
        if self.advertised.set_mapping(m) {
            self.announce_change();
        }
    }

    /// A peer's server saw our client come from `ip`.
    pub(super) fn peer_saw(&mut self, ip: &str) {
        if let Ok(ip) = ip.parse() {
            if self.advertised.peer_saw(ip) {
                self.announce_change();
            }
        }
    }

    pub(super) fn announce_change(&mut self) {
        let address = self.advertised.render();
        log(
            2,
            self.o.verbose,
            format!("our address for peers: {address:?}"),
        );
        self.handle(Input::OurAddress(address));
    }

    /// Starts a renewal check (see [`tasks::renew`]).
    pub(super) fn check_renewal(&mut self) {
        let input = tasks::RenewalInput {
            registry: self.registry.clone(),
            ca: self.ca.clone(),
            ca_path: self.o.ca.clone(),
            cert: self.my_cert.clone(),
            cert_path: self.o.cert.clone(),
            key: self.key.clone(),
            revoked: self.core.config().crl.contains(&self.core.own_serial()),
            now: now(),
            verbose: self.o.verbose,
        };
        let done = self.done.clone();
        tokio::spawn(async move {
            let _ = done.send(tasks::renew(input).await);
        });
    }

    /// Takes our renewed certificate into use: the peer protocol's identity
    /// and the client tunnels (they reconnect with it; the caller restarts
    /// the servers).
    pub(super) fn use_new_cert(&mut self) {
        match Identity::new(self.ca.clone(), self.my_cert.clone(), self.key.clone()) {
            Ok(me) => self.core.use_identity(me),
            Err(e) => log(1, self.o.verbose, format!("new certificate: {e}")),
        }
        let serial = cert::serial(&self.my_cert)
            .ok()
            .and_then(|s| u64::try_from(s).ok());
        self.cert_not_after = renewal::unix(self.my_cert.not_after()).unwrap_or(0);
        // The manager first: each tunnel's exit is then a restart with the
        // new certificate, to the same peer (see `on_new_certificate`).
        self.handle(Input::NewCertificate { serial });
        // Killed but kept: reaping them tells the manager, which reconnects.
        for c in self.clients.values_mut() {
            let _ = c.start_kill();
        }
        if let Some(c) = self.client_mode_child.take() {
            tasks::kill_in_background(c);
        }
        self.reap_clients();
    }

    /// Starts fetching the network configuration (a newer one exists).
    pub(super) fn fetch_config(&mut self) {
        let (registry, done) = (self.registry.clone(), self.done.clone());
        tokio::spawn(async move {
            let answer = registry.lock().await.network_config().await;
            let _ = done.send(Done::NetworkConfig(answer));
        });
    }

    /// Takes a newer network configuration into use: cached, its version
    /// and CRL for the peer protocol, its hello for OpenVPN's time-out.
    pub(super) fn use_config(&mut self, new: &NetworkConfig) {
        if let Err(e) = netconfig_cache::save(&self.o.state.join("network-config.bin"), new) {
            log(
                1,
                self.o.verbose,
                format!("cannot cache the network configuration: {e}"),
            );
        }
        self.common.ping_exit = 4 * new.hello;
    }

    /// Drops the connections to our servers that use a certificate just
    /// revoked (`serials`), alone: the other clients keep their tunnels,
    /// and so does a new connection of the same node with a renewed
    /// certificate. In a task, through each server's management socket; a
    /// failure is reported on `failed` (the servers are then restarted).
    pub(super) fn drop_served(
        &self,
        serials: &BTreeSet<u64>,
        failed: &tokio::sync::mpsc::Sender<String>,
    ) {
        let targets = self.core.served().links().using(serials);
        if targets.is_empty() {
            return;
        }
        let run = self.o.run.clone();
        let (v, failed) = (self.o.verbose, failed.clone());
        tokio::spawn(async move {
            // The revoking version, just announced, must get through the
            // tunnel first: a node cut before it learns of its revocation
            // only once alone (15 s) and checking the configuration. With
            // the servers restarted at once, it took 43 s in the revocation
            // test (tests/network_changes.rs) instead of 2 s.
            tokio::time::sleep(REVOKED_DROP_DELAY).await;
            for (iface, addresses) in &targets {
                let socket = management::socket_path(&run, iface);
                let r = management::kill_connections(&socket, addresses, Duration::from_secs(5));
                match r.await {
                    Ok(n) => {
                        log(
                            2,
                            v,
                            format!("revoked peers: dropped {n} of {addresses:?} from {iface}"),
                        );
                        // babeld keeps routing through the dropped peer
                        // until its link-quality estimate gives up on it
                        // (12 lost 1 s hellos; sooner as its cost doubles
                        // with each): it cannot forget one neighbour, and
                        // re-creating the interface is unsafe with stock
                        // babeld 1.12 (see `handover`).
                    }
                    Err(e) => {
                        let _ = failed.send(format!("{iface}: {e}")).await;
                    }
                }
            }
        });
    }

    /// A datagram on the peer protocol's port. One from a local socket
    /// is the registry's relay if the registry sent it (see
    /// `relay_source`), and dropped otherwise.
    pub(super) fn datagram(&mut self, from: SocketAddr, data: Vec<u8>) {
        if from.ip().to_canonical().is_loopback() {
            let our_uid = nix::unistd::geteuid().as_raw();
            if super::relay_source::trusted(from, our_uid) {
                self.handle(Input::Relay { from, data });
            } else {
                self.handle(Input::RelayRefused { from });
            }
        } else {
            self.handle(Input::Datagram { from, data });
        }
    }

    pub(super) fn hook_event(&mut self, data: &[u8], from: Option<&Path>) {
        let Ok(event) = Event::decode(data) else {
            return;
        };
        self.handle(Input::Hook {
            event,
            reply_to: from.map(Path::to_path_buf),
        });
    }

    /// What a task reports, for the core (and the state it changes).
    pub(super) fn on_done(&mut self, done: Done) {
        match done {
            Done::Routes(view) => self.handle(Input::Dumped(view)),
            Done::Status(stream, view) => {
                self.status_dumps -= 1;
                self.write_status(stream, view);
            }
            Done::Bootstrap(answer) => {
                self.handle(Input::Bootstrap(answer.map_err(|e| e.to_string())));
            }
            Done::NetworkConfig(answer) => self.handle(Input::ConfigFetched(
                answer.map(Box::new).map_err(|e| e.to_string()),
            )),
            Done::Renewal(r) => {
                self.handle(Input::RenewalDone {
                    retry_tomorrow: r.retry_tomorrow,
                });
                if let Some(cert) = r.cert {
                    self.my_cert = cert;
                }
                self.handle(Input::Renewed(match r.renewed {
                    Renewed::Ca => CoreRenewed::Ca,
                    Renewed::Cert => CoreRenewed::Cert,
                    Renewed::Nothing => CoreRenewed::Nothing,
                }));
            }
            Done::CacheSaved(saved) => self.handle(Input::CacheSaved(saved)),
            Done::KernelRoutes(found) => {
                self.handle(Input::KernelRoutesCompared);
                if let Some((table, kernel)) = found {
                    self.fix_kernel_routes(&table, &kernel);
                }
            }
        }
    }
}
