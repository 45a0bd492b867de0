//! The node's decisions, sans-IO: [`NodeCore`] takes every event the
//! daemon's shell sees ([`Input`]: a hook event, a child's exit, a task's
//! answer, the clock's tick) with the time, and says what to do
//! ([`Effect`]: answer a hook, start babeld, ask the registry, dump
//! babeld, save the cache, log). No sockets, processes, files or clock
//! reads in here: the shell (`re6st-node`'s `daemon`) reads the clocks, carries the
//! effects out (the slow ones in tasks) and reports back as inputs.
//!
//! Each area lives in a file named after it: [`hooks`] (OpenVPN's hook
//! events, the peers on our servers), [`babel`] (babeld's dumps and
//! restarts), [`registry`] (bootstrap, network configuration, renewal),
//! [`servers`] (what restarts: OpenVPN servers, babeld, the node) and
//! [`timers`] (periodic announcements, kernel checks, cache saves).

pub mod babel;
pub mod hooks;
pub mod link;
pub mod peers;
pub mod registry;
pub mod servers;
pub mod timers;
pub mod tunnels;

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use re6st_proto::address::Address;
use re6st_proto::prefix::Prefix;

use re6st_proto::netconfig::NetworkConfig;

use crate::hook_event::Event;
use crate::peer_link::PeerLink;
use crate::reconfig::Plan;
use crate::tunnel::{Manager, RoutingView};

/// The time of an input, as read by the shell.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For the core's timers ([`NodeCore::poll_timeout`]).
    pub at: Instant,
    /// Seconds of the interval clock (monotonic, started at the wall
    /// clock): the tunnel manager's and the periodic work's time.
    pub mono: i64,
    /// Wall-clock seconds: for what is about dates (renewal).
    pub wall: i64,
    /// The wall clock in microseconds: the peer protocol's session
    /// secrets start with it (a newer secret compares greater).
    pub wall_us: u64,
}

/// What happened, for the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// The 1 s tick of the shell's loop.
    Tick,
    /// [`NodeCore::poll_timeout`]'s time came.
    Timer,
    /// An OpenVPN hook event, with the socket to answer on (client-connect
    /// waits for the answer).
    Hook {
        event: Event,
        reply_to: Option<PathBuf>,
    },
    /// babeld exited on its own (how, for the log).
    BabeldExited {
        status: String,
    },
    /// babeld was started: after its back-off (`restarted`), or anew for
    /// a new configuration.
    BabeldStarted {
        restarted: bool,
    },
    BabeldStartFailed {
        error: String,
    },
    /// A dump for the tunnel manager (none: babeld did not answer).
    Dumped(Option<RoutingView>),
    /// The registry's answer: a peer (prefix, addresses), none, or why not.
    Bootstrap(Result<Option<(String, String)>, String>),
    /// A peer (or the registry) has a newer network version than ours.
    NewerConfigSeen,
    /// A network configuration fetch ended: the registry's
    /// configuration, or why not.
    ConfigFetched(Result<Box<NetworkConfig>, String>),
    /// A renewed certificate is in use (its serial): the tunnels
    /// reconnect with it.
    NewCertificate {
        serial: Option<u64>,
    },
    /// babeld's neighbours changed (its monitor said).
    RoutingChanged,
    /// A babel neighbour on this interface became usable (its monitor
    /// said).
    NeighbourUsable(String),
    /// Our taps (servers' and clients'), on which a usable neighbour is
    /// worth a table exchange after a tunnel started or babeld lost its
    /// neighbours (see [`Effect::ExchangeTables`]); none in a network
    /// with an IPv4 payload.
    ExchangeTaps(Vec<String>),
    /// babeld may have taken an interface back: its tap lost its carrier
    /// for a moment (our servers restarted), and babeld runs with `-l`.
    InterfaceTakenBack(String),
    /// A renewal check ended; the renewal was refused as no better than
    /// what we have (`retry_tomorrow`).
    RenewalDone {
        retry_tomorrow: bool,
    },
    /// Our certificate is on the CRL: renew it now.
    OwnCertRevoked,
    /// A comparison of babeld's routes with the kernel's ended.
    KernelRoutesCompared,
    /// A save of the peer cache ended.
    CacheSaved(Result<(), String>),
    /// Our OpenVPN servers were restarted: nobody is on them.
    ServersRestarted,
    /// One of our OpenVPN servers exited (how, for the log).
    ServerExited {
        iface: String,
        status: String,
    },
    /// A client tunnel's OpenVPN exited.
    TunnelExited(Prefix),
    /// A server could not drop a revoked peer alone (why).
    DropFailed(String),
    /// A newer network configuration is in use; what changed.
    NewConfig(Plan),
    /// What a renewal check brought (after [`Input::RenewalDone`]).
    Renewed(servers::Renewed),
    /// A datagram on the peer protocol's port, from a peer.
    Datagram {
        from: SocketAddr,
        data: Vec<u8>,
    },
    /// A datagram of the registry's relay (from a local socket the shell
    /// found to be the registry's: root's or our user's).
    Relay {
        from: SocketAddr,
        data: Vec<u8>,
    },
    /// What we announce to peers as our addresses changed (UPnP, or what
    /// a peer's server saw).
    OurAddress(String),
    /// A relay datagram from a local socket we do not trust.
    RelayRefused {
        from: SocketAddr,
    },
    /// The interfaces babeld runs on (its command line).
    BabelInterfaces(Vec<String>),
    /// babeld's default interface parameters (from the network's).
    BabelDefaults(String),
    /// A tunnel's OpenVPN could not be started.
    TunnelStartFailed {
        prefix: Prefix,
        error: String,
    },
}

/// What to do, for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A log line (levels as `daemon::log::log`).
    Log { level: u8, message: String },
    /// Answer a client-connect hook: accept the peer or refuse it.
    AnswerHook { to: PathBuf, accept: bool },
    /// A server of a peer saw our client come from this address.
    PeerSawUs(String),
    /// Start babeld (its back-off passed).
    StartBabeld,
    /// Dump babeld's routes for the tunnel manager ([`Input::Dumped`]).
    DumpBabel,
    /// Ask the registry for a bootstrap peer ([`Input::Bootstrap`]).
    AskBootstrap,
    /// Fetch the network configuration ([`Input::ConfigFetched`]).
    FetchConfig,
    /// Check our certificate's and the CA's ends ([`Input::RenewalDone`]).
    CheckRenewal,
    /// Use this network configuration (newer than ours, and already the
    /// peer protocol's: cache it, give OpenVPN its ping time-out).
    UseConfig(Box<NetworkConfig>),
    /// Compare babeld's routes with the kernel's
    /// ([`Input::KernelRoutesCompared`]).
    CompareKernelRoutes,
    /// Save the peer cache ([`Input::CacheSaved`]).
    SaveCache,
    /// See whether a server exited ([`Input::ServerExited`]).
    CheckServers,
    /// Restart our OpenVPN servers ([`Input::ServersRestarted`]).
    RestartServers,
    /// Restart babeld with the network configuration's parameters (if it
    /// runs; one waiting for its restart takes them then).
    RestartBabeld,
    /// Drop the connections to our servers of these revoked serials.
    DropServed(BTreeSet<u64>),
    /// Use our renewed certificate (reconnect the client tunnels).
    UseNewCert,
    /// Clean up and start the node over.
    Reexec,
    /// Send a datagram on the peer protocol's socket (to a peer, or an
    /// answer to the registry's relay).
    SendDatagram { to: SocketAddr, data: Vec<u8> },
    /// Lines for babeld's control socket, in order.
    TellBabel(Vec<String>),
    /// Make babeld ask for its neighbours' full route tables on `iface`
    /// and send them its own: the tap's IPv4 address changes from
    /// `remove` to `add` (/32 each), which stock babeld answers that way.
    ExchangeTables {
        iface: String,
        remove: Option<std::net::Ipv4Addr>,
        add: std::net::Ipv4Addr,
    },
    /// Start a client tunnel's OpenVPN (after stopping one to the same
    /// peer) ([`Input::TunnelStartFailed`]).
    StartTunnel {
        prefix: Prefix,
        iface: String,
        address: Address,
    },
    /// Stop a client tunnel's OpenVPN, and take babeld's routes through
    /// its tap out of the kernel: the tap goes to the next tunnel, maybe
    /// to another peer, and stock babeld takes the kernel's "exists" for
    /// success when it then routes through that peer on the tap (the
    /// route through the old one stayed until the daemon's comparison of
    /// both views repaired it: 10 to 30 s after a certificate renewal).
    StopTunnel { prefix: Prefix, iface: String },
    /// Keep the routes through a tunnel being drained in the kernel
    /// (`hold`), or stop keeping them.
    HoldRoutes { iface: String, hold: bool },
    /// Silence babel on a tunnel being drained (`mute`), or let it speak
    /// again (see `daemon::handover`).
    MuteBabel { iface: String, mute: bool },
}

/// Effects waiting for the shell, at most: the shell drains them after
/// every input, so only a bug could fill this; beyond, the oldest go.
pub const MAX_EFFECTS: usize = 4096;

pub struct NodeCore {
    /// The tunnel manager (its actions become effects in `poll_effect`).
    manager: Manager,
    /// The network configuration in use.
    config: NetworkConfig,
    /// Our certificate's serial.
    own_serial: u64,
    served: hooks::Served,
    babeld: babel::Babeld,
    registry: registry::Registry,
    timers: timers::Timers,
    servers: servers::Servers,
    babel: tunnels::BabelIfaces,
    /// The registry's node, the only one answered about our tunnels.
    registry_node: Option<Prefix>,
    /// Relay datagrams refused.
    relay_refused: u64,
    /// The peer protocol's sessions, our address list and version.
    link: PeerLink,
    /// Where the registry's relay last spoke from: answers to what it
    /// asked peers go there.
    forward_to: Option<SocketAddr>,
    /// The last input's wall clock (µs), for messages that the tunnel
    /// manager's actions send.
    wall_us: u64,
    effects: VecDeque<Effect>,
}

impl NodeCore {
    pub fn new(
        manager: Manager,
        link: PeerLink,
        config: NetworkConfig,
        own_serial: u64,
        now: Now,
    ) -> NodeCore {
        NodeCore {
            manager,
            link,
            forward_to: None,
            wall_us: now.wall_us,
            registry_node: config.registry_prefix,
            config,
            own_serial,
            served: hooks::Served::default(),
            babeld: babel::Babeld::new(&now),
            registry: registry::Registry::new(&now),
            timers: timers::Timers::new(&now),
            servers: servers::Servers::default(),
            babel: tunnels::BabelIfaces::default(),
            relay_refused: 0,
            effects: VecDeque::new(),
        }
    }

    pub fn handle(&mut self, input: Input, now: Now) {
        self.wall_us = now.wall_us;
        match input {
            Input::Tick => {
                self.servers_tick(&now);
                self.registry_tick(&now);
                self.periodic_tick(&now);
                self.manager.tick(now.mono);
                self.save_tick(&now);
                let hello0s = self.link.retry_pending(now.wall_us);
                self.send_datagrams(hello0s);
            }
            Input::Timer => self.babeld_timer(&now),
            Input::Hook { event, reply_to } => self.on_hook(event, reply_to),
            Input::BabeldExited { status } => self.on_babeld_exited(status, &now),
            Input::BabeldStarted { restarted } => self.on_babeld_started(restarted, &now),
            Input::BabeldStartFailed { error } => self.on_babeld_start_failed(error, &now),
            Input::Dumped(view) => self.on_dump(view, &now),
            Input::Bootstrap(answer) => self.on_bootstrap(answer),
            Input::NewerConfigSeen => self.newer_config_seen(&now),
            Input::ConfigFetched(answer) => self.on_config_fetched(answer, &now),
            Input::NewCertificate { serial } => {
                self.own_serial = serial.unwrap_or(self.own_serial);
                self.manager.on_new_certificate();
            }
            Input::RoutingChanged => {
                self.manager.on_routing_changed();
                self.check_kernel_soon();
            }
            Input::NeighbourUsable(iface) => self.on_neighbour_usable(iface, &now),
            Input::ExchangeTaps(taps) => self.set_exchange_taps(taps),
            Input::InterfaceTakenBack(iface) => self.arm_exchange(&iface),
            Input::RenewalDone { retry_tomorrow } => self.on_renewal_done(retry_tomorrow, &now),
            Input::OwnCertRevoked => self.own_cert_revoked(&now),
            Input::KernelRoutesCompared => self.kernel_routes_compared(),
            Input::CacheSaved(result) => self.on_cache_saved(result),
            Input::ServersRestarted => self.servers_restarted(&now),
            Input::ServerExited { iface, status } => self.on_server_exited(iface, status),
            Input::TunnelExited(prefix) => self.on_tunnel_exited(prefix),
            Input::DropFailed(why) => self.on_drop_failed(why),
            Input::NewConfig(plan) => self.on_new_config(plan, &now),
            Input::Renewed(renewed) => self.on_renewed(renewed),
            Input::Datagram { from, data } => self.on_datagram(from, &data, &now),
            Input::Relay { from, data } => self.on_relay(from, &data, &now),
            Input::OurAddress(address) => self.link.my_address = address,
            Input::RelayRefused { from } => self.on_relay_refused(from),
            Input::BabelInterfaces(interfaces) => self.set_babel_interfaces(interfaces),
            Input::BabelDefaults(defaults) => self.set_babel_defaults(defaults),
            Input::TunnelStartFailed { prefix, error } => {
                self.on_tunnel_start_failed(prefix, error)
            }
        }
        while self.effects.len() > MAX_EFFECTS {
            self.effects.pop_front();
        }
    }

    /// What to do next: the core's effects, then the tunnel manager's
    /// actions (it may also be told things directly, between inputs).
    pub fn poll_effect(&mut self) -> Option<Effect> {
        loop {
            if let Some(e) = self.effects.pop_front() {
                return Some(e);
            }
            let action = self.manager.poll_action()?;
            self.on_action(action);
        }
    }

    /// When to give the core [`Input::Timer`] (besides the 1 s tick).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.babeld.next_timer()
    }

    /// The tunnel manager, for the status.
    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    /// The network configuration in use.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    pub fn own_serial(&self) -> u64 {
        self.own_serial
    }

    pub fn served(&self) -> &hooks::Served {
        &self.served
    }

    pub fn babeld_restarts(&self) -> u64 {
        self.babeld.restarts()
    }

    pub fn babel_interfaces(&self) -> &tunnels::BabelIfaces {
        &self.babel
    }

    pub fn openvpn_restarts(&self) -> u64 {
        self.servers.exits()
    }

    fn log(&mut self, level: u8, message: impl Into<String>) {
        self.effects.push_back(Effect::Log {
            level,
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests;
