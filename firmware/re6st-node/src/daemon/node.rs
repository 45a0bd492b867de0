//! The node as the event loop holds it: what the shell keeps beside the
//! core (our tunnels' OpenVPNs, the registry client, the tasks' channels,
//! our certificate and addresses), and where each effect of the core is
//! carried out (here, or in the file named after what it touches).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use openssl::pkey::PKey;
use openssl::x509::X509;
use re6st_proto::prefix::Prefix;
use re6st_registry_client::client::RegistryClient;
use tokio::net::UdpSocket;
use tokio::process::Child;
use tokio::sync::mpsc;

use super::clock::clock;
use super::log::log;
use super::options::Options;
use super::tasks::{Done, KernelJob, Renewed};
use crate::babel::kernel_check::KernelCheck;
use crate::kernel::{self, Addr, NetOp};
use crate::nat::advertised::Advertised;
use crate::openvpn::args::Common;
use crate::state::peers as peers_file;
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
            Effect::AskBootstrap => self.ask_bootstrap(),
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
            // Carried out by `run_node`, with the sockets and `Children` it
            // holds.
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
