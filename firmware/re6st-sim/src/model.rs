//! The simulated network: one real [`NodeCore`] per node (the daemon's
//! decisions: its tunnel manager, its peer protocol with real handshakes,
//! its registry calls and timers), the tunnel graph, a registry answering
//! `getBootstrapPeer`, datagrams, and time. The simulator plays the
//! daemon's shell: it carries out each core's effects and reports back.
//!
//! Time advances in whole seconds, like the cores' interval clocks. Within
//! a second, events (boots, tunnel results, datagrams) run in the order
//! they were scheduled, then every node due is ticked; whatever a core asks
//! for is carried out at once (a babel dump is computed from the current
//! graph, a datagram delivered within the second), except tunnels, which
//! come up `tunnel_delay` seconds later.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use re6st_node_core::hook_event::{Event as Hook, Peer};
use re6st_node_core::node::{Effect, Input, NodeCore, Now};
use re6st_node_core::peer_cache::{PeerCache, DEFAULT_CAPACITY};
use re6st_node_core::peer_link::PeerLink;
use re6st_node_core::tunnel::{Config, Manager, CONNECT_TIMEOUT};
use re6st_proto::message::Code;
use re6st_proto::netconfig::NetworkConfig;
use re6st_proto::peer::PeerTable;
use re6st_proto::prefix::Prefix;
use serde::Serialize;

use crate::config::{Loss, LossKind, SimConfig};
use crate::graph::{Components, Graph, Tunnel};
use crate::ids::{
    address_list, index, ipv4, node_of_ip, node_of_overlay, overlay, prefix, REGISTRY,
};
use crate::pki::Pki;
use crate::rng::Rng;
use crate::routing::Router;
use crate::wire::{classify, Kind, PeerTraffic};

/// Seconds a node is ticked every second after an event.
const ACTIVE_S: i64 = 2;
/// A node below its client count is *quiet* (nothing changes for it) once
/// this long passed since the last event reached its manager or it opened
/// or closed a tunnel, while it drains nothing: issue 16 bounds its dumps.
const QUIET_S: i64 = 60;
/// How often a node's core announces the network version to its tunnel
/// peers: every node is ticked then.
const VERSION_EVERY: i64 = 30;
/// The simulation's wall clock at second 0 (for certificates' validity
/// and session secrets): a fixed date, so that runs repeat.
const WALL_START: i64 = 1_800_000_000;

thread_local! {
    /// The cores' random generator (session secrets): `PeerLink` takes a
    /// plain `fn`, so the state it reads lives here, loaded from the
    /// running simulation's for each of its steps.
    static SECRETS: Cell<u64> = const { Cell::new(0) };
}

fn sim_random(buf: &mut [u8]) {
    SECRETS.with(|s| {
        let mut r = Rng::new(s.get());
        for chunk in buf.chunks_mut(8) {
            let x = r.next_u64().to_le_bytes();
            chunk.copy_from_slice(&x[..chunk.len()]);
        }
        s.set(r.next_u64());
    });
}

/// What the simulator did on the managers' behalf.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Babel dumps the managers asked for (each answered with a view).
    pub dumps: u64,
    /// Of those dumps, the ones of nodes below
    /// their client count, and the node-seconds spent below it: issue
    /// 16's target is about the dumps of such a node while nothing changes.
    pub underconnected_dumps: u64,
    pub underconnected_seconds: u64,
    /// The same, counted only while the node is quiet (see `QUIET_S`).
    pub quiet_underconnected_dumps: u64,
    pub quiet_underconnected_seconds: u64,
    pub bootstrap_requests: u64,
    /// Bootstrap requests answered with a peer.
    pub bootstrap_answers: u64,
    /// Network configurations fetched by cut-off nodes (registry load).
    pub config_checks: u64,
    /// OpenVPN client starts (each address tried counts).
    pub tunnel_attempts: u64,
    pub tunnels_up: u64,
    pub tunnel_failures: u64,
    /// Client tunnels closed by their manager.
    pub tunnel_closes: u64,
}

impl Counts {
    pub fn minus(&self, o: &Counts) -> Counts {
        Counts {
            dumps: self.dumps - o.dumps,
            underconnected_dumps: self.underconnected_dumps - o.underconnected_dumps,
            underconnected_seconds: self.underconnected_seconds - o.underconnected_seconds,
            quiet_underconnected_dumps: self.quiet_underconnected_dumps
                - o.quiet_underconnected_dumps,
            quiet_underconnected_seconds: self.quiet_underconnected_seconds
                - o.quiet_underconnected_seconds,
            bootstrap_requests: self.bootstrap_requests - o.bootstrap_requests,
            bootstrap_answers: self.bootstrap_answers - o.bootstrap_answers,
            config_checks: self.config_checks - o.config_checks,
            tunnel_attempts: self.tunnel_attempts - o.tunnel_attempts,
            tunnels_up: self.tunnels_up - o.tunnels_up,
            tunnel_failures: self.tunnel_failures - o.tunnel_failures,
            tunnel_closes: self.tunnel_closes - o.tunnel_closes,
        }
    }
}

struct Node {
    core: Option<NodeCore>,
    nat: bool,
    boot_at: i64,
    next_tick: i64,
    /// Until when the node is ticked every second after something
    /// happened to it (see `Sim::tick_all`).
    active_until: i64,
    /// From when the node is quiet (see `QUIET_S`).
    quiet_from: i64,
    /// Clients on our UDP and TCP servers.
    served: [usize; 2],
}

enum Event {
    Boot(u32),
    /// `tunnel_delay` after an OpenVPN client started.
    TunnelResult {
        t: u32,
        attempt: u64,
        opened: i64,
        right_node: bool,
    },
    /// The client's OpenVPN exits (failed attempt, or ping-exit).
    TunnelExit {
        t: u32,
        attempt: u64,
    },
    /// The server's OpenVPN drops a client that went silent.
    ServedGone {
        t: u32,
        attempt: u64,
    },
    Deliver {
        from: u32,
        to: u32,
        datagram: Vec<u8>,
    },
}

struct Queued {
    at: i64,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

pub struct Sim {
    cfg: SimConfig,
    now: i64,
    nodes: Vec<Node>,
    alive: Vec<bool>,
    alive_version: u64,
    graph: Graph,
    router: Router,
    comp: Components,
    comp_key: Option<(u64, u64)>,
    events: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    attempts: u64,
    rng: Rng,
    work: Vec<u32>,
    queued: Vec<bool>,
    traffic: PeerTraffic,
    counts: Counts,
    graveyard: Vec<NodeCore>,
    pki: Pki,
    /// Instant of second 0, for the cores' timers.
    start: Instant,
    /// This simulation's state of `SECRETS`.
    secrets: u64,
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let n = cfg.nodes;
        let mut rng = Rng::derive(cfg.seed, 1);
        let nodes = (0..n)
            .map(|i| Node {
                core: None,
                // The registry's node is public: everybody's first peer.
                nat: i != REGISTRY && rng.unit() < cfg.nat,
                boot_at: if i == REGISTRY || cfg.join_over == 0 {
                    0
                } else {
                    rng.below(cfg.join_over as u64) as i64
                },
                next_tick: 0,
                active_until: 0,
                quiet_from: 0,
                served: [0; 2],
            })
            .collect::<Vec<_>>();
        let mut sim = Sim {
            now: 0,
            alive: vec![false; n as usize],
            alive_version: 0,
            graph: Graph::new(n),
            router: Router::default(),
            comp: Components::default(),
            comp_key: None,
            events: BinaryHeap::new(),
            seq: 0,
            attempts: 0,
            rng,
            work: Vec::new(),
            queued: vec![false; n as usize],
            traffic: PeerTraffic::default(),
            counts: Counts::default(),
            graveyard: Vec::new(),
            pki: Pki::new(WALL_START).expect("the simulation's certificates"),
            start: Instant::now(),
            secrets: Rng::derive(cfg.seed, 2).next_u64(),
            nodes,
            cfg,
        };
        for i in 0..n {
            let at = sim.nodes[i as usize].boot_at;
            sim.schedule(at, Event::Boot(i));
        }
        sim
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    pub fn now(&self) -> i64 {
        self.now
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn alive(&self) -> &[bool] {
        &self.alive
    }

    pub fn alive_count(&self) -> usize {
        self.alive.iter().filter(|&&a| a).count()
    }

    pub fn is_nat(&self, i: u32) -> bool {
        self.nodes[i as usize].nat
    }

    pub fn traffic(&self) -> PeerTraffic {
        self.traffic
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn mgr(&self, i: u32) -> Option<&Manager> {
        self.nodes[i as usize].core.as_ref().map(NodeCore::manager)
    }

    /// The time of an input now, as the daemon's shell reads it.
    fn time(&self) -> Now {
        let wall = WALL_START + self.now;
        Now {
            at: self.start + Duration::from_secs(self.now as u64),
            mono: self.now,
            wall,
            wall_us: wall as u64 * 1_000_000,
        }
    }

    /// Client tunnels of a live node's manager (established or not).
    pub fn client_tunnels(&self, i: u32) -> Option<usize> {
        self.mgr(i).map(|m| m.tunnels().count())
    }

    /// Sessions in a live node's peer-protocol table.
    pub fn peer_sessions(&self, i: u32) -> Option<usize> {
        (self.nodes[i as usize].core.as_ref()).map(|c| c.link().peers.len())
    }

    /// Peers on a live node's servers, as its manager knows them.
    pub fn served(&self, i: u32) -> Option<usize> {
        self.mgr(i).map(|m| m.served().len())
    }

    /// A live node's manager state, for debugging.
    pub fn debug_node(&self, i: u32) -> String {
        self.mgr(i).map_or_else(String::new, |m| {
            format!(
                "tunnels {:?} served {:?} cut {} cache {} known {} next_timeout {}",
                m.client_tunnels()
                    .iter()
                    .map(|t| (t.peer.value(), t.state, t.routes))
                    .collect::<Vec<_>>(),
                m.served().iter().map(|p| p.value()).collect::<Vec<_>>(),
                m.is_disconnected(),
                m.cache().len(),
                m.routing().known.len(),
                m.next_timeout()
            )
        })
    }

    /// Live nodes whose manager believes the registry is out of reach.
    pub fn registry_cut(&self) -> usize {
        self.nodes
            .iter()
            .filter_map(|n| n.core.as_ref())
            .filter(|c| c.manager().is_disconnected())
            .count()
    }

    /// The connected components of the live nodes, now.
    pub fn components(&mut self) -> &Components {
        let key = (self.graph.version(), self.alive_version);
        if self.comp_key != Some(key) {
            self.comp.compute(&self.graph, &self.alive);
            self.comp_key = Some(key);
        }
        &self.comp
    }

    fn schedule(&mut self, at: i64, event: Event) {
        self.seq += 1;
        self.events.push(Reverse(Queued {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// One simulated second.
    pub fn step(&mut self) {
        SECRETS.with(|s| s.set(self.secrets));
        self.process_events();
        self.tick_all();
        // Datagrams sent by the ticks arrive within the second.
        self.process_events();
        self.now += 1;
        self.secrets = SECRETS.with(Cell::get);
    }

    fn process_events(&mut self) {
        loop {
            self.run_work();
            match self.events.peek() {
                Some(Reverse(q)) if q.at <= self.now => {}
                _ => break,
            }
            let Some(Reverse(q)) = self.events.pop() else {
                break;
            };
            self.handle(q.event);
        }
    }

    /// Ticks the nodes that are due. The daemon ticks every node every
    /// second; a tick only matters when it makes the manager ask for a
    /// babel dump, so:
    /// * a node draining a tunnel (either end) is ticked every second, and
    ///   so is a node for `ACTIVE_S` seconds after an event reached its
    ///   manager or it opened or closed a tunnel (it is settling);
    /// * a node below its manager's tunnel target otherwise every `tick`
    ///   seconds (for the core's other periodic work, below);
    /// * any node at its manager's `next_wake`: the first second at which
    ///   its tick acts (a dump, backing off while nothing changes below the
    ///   target; a refresh, a drain, a background address query, a
    ///   configuration check; a full node's dump once its view is
    ///   `ROUTES_MAX_AGE` old), so that the manager misses none of the
    ///   daemon's per-second ticks whatever `tick` is (a unit test of the
    ///   manager checks that both give the same actions);
    /// * every node every `VERSION_EVERY` seconds after its boot, when its
    ///   core announces the network version to its neighbours.
    ///
    /// A core's other periodic work (renewal checks, kernel route
    /// comparisons, cache saves, hello0 retries) happens at the ticks it
    /// gets: later than in the daemon for a node not ticked every second;
    /// and an event reaches a manager with the clock of its last tick.
    fn tick_all(&mut self) {
        let now = self.now;
        let time = self.time();
        for i in 0..self.cfg.nodes {
            if !self.alive[i as usize] {
                continue;
            }
            let busy = self.graph.drains(i);
            let (tick, client_count) = (self.cfg.tick, self.cfg.client_count);
            let node = &mut self.nodes[i as usize];
            let Some(core) = node.core.as_mut() else {
                continue;
            };
            let announce = now > node.boot_at && (now - node.boot_at) % VERSION_EVERY == 0;
            let m = core.manager();
            let tunnels = m.tunnels().count();
            let quiet = tunnels < client_count && !busy && now >= node.quiet_from;
            if tunnels < client_count {
                self.counts.underconnected_seconds += 1;
            }
            if quiet {
                self.counts.quiet_underconnected_seconds += 1;
            }
            // At its target (a NATed node's two tunnels, say), a node dumps
            // like a full one: its manager would not act on a fresher view.
            let full = tunnels >= m.tunnel_target();
            let periodic = now >= node.next_tick;
            if periodic {
                node.next_tick = now + tick;
            }
            let active = now < node.active_until;
            if busy || active || announce || now >= m.next_wake() || (periodic && !full) {
                core.handle(Input::Tick, time);
                self.touch(i);
                self.run_work();
            }
        }
    }

    fn touch(&mut self, i: u32) {
        if !self.queued[i as usize] {
            self.queued[i as usize] = true;
            self.work.push(i);
        }
    }

    /// Carries out every pending effect of every touched core.
    fn run_work(&mut self) {
        while let Some(i) = self.work.pop() {
            self.queued[i as usize] = false;
            while let Some(e) = self.nodes[i as usize]
                .core
                .as_mut()
                .and_then(NodeCore::poll_effect)
            {
                self.act(i, e);
            }
        }
    }

    /// Gives a live node's core an input that changes what its manager
    /// knows (the node is then active, and not quiet); what it asks for is
    /// carried out by `run_work`.
    fn event(&mut self, i: u32, input: Input) {
        self.stir(i);
        self.input(i, input);
    }

    /// Something changed for node `i`: it is active, and not quiet.
    fn stir(&mut self, i: u32) {
        let node = &mut self.nodes[i as usize];
        node.active_until = self.now + ACTIVE_S;
        node.quiet_from = self.now + QUIET_S;
    }

    /// An OpenVPN hook event on node `i` (no hook waits for an answer).
    fn hook(&mut self, i: u32, event: Hook) {
        self.event(
            i,
            Input::Hook {
                event,
                reply_to: None,
            },
        );
    }

    /// Gives a live node's core an input, leaving its activity alone.
    fn input(&mut self, i: u32, input: Input) {
        let time = self.time();
        if let Some(core) = self.nodes[i as usize].core.as_mut() {
            core.handle(input, time);
            self.touch(i);
        }
    }

    /// How a server's hooks name a client of node `c` (as OpenVPN's
    /// environment would: its certificate, the server's tap, where the
    /// client comes from).
    fn hook_peer(c: u32, proto: u8) -> Peer {
        Peer {
            cn: prefix(c).to_subnet(),
            dev: if proto == 0 {
                "re6stnet-udp"
            } else {
                "re6stnet-tcp"
            }
            .into(),
            serial: u64::from(c) + 1,
            ip: ipv4(c).to_string(),
            port: 1194,
        }
    }

    /// A server's OpenVPN saw its client `c` leave.
    fn served_gone(&mut self, server: u32, c: u32, proto: u8) {
        self.hook(server, Hook::ClientDisconnect(Self::hook_peer(c, proto)));
    }

    /// Node `i`'s OpenVPN client to `j` stops (if there is one): the
    /// server sees it leave if it was connected.
    fn stop_client(&mut self, i: u32, j: u32) {
        if let Some(x) = self.graph.by_pair(i, j).and_then(|t| self.drop_tunnel(t)) {
            if x.up {
                self.served_gone(j, i, x.proto);
            }
        }
    }

    fn boot(&mut self, i: u32) {
        let cfg = &self.cfg;
        let mut cache = PeerCache::new(DEFAULT_CAPACITY);
        let mut r = Rng::derive(cfg.seed, 0x1000_0000 + u64::from(i));
        if i != REGISTRY {
            // A first boot: re6st-conf leaves the registry's node as the
            // only peer known.
            cache.add_peer(
                prefix(REGISTRY),
                &address_list(REGISTRY),
                false,
                &mut || r.next_u64(),
            );
        }
        let mc = Config {
            me: prefix(i),
            registry: Some(prefix(REGISTRY)),
            client_count: cfg.client_count,
            tunnel_refresh: cfg.tunnel_refresh,
            timeout: cfg.timeout(),
            neighbours: BTreeSet::new(),
            disabled: BTreeSet::new(),
            countries: Default::default(),
        };
        let seed = r.next_u64();
        let manager = Manager::new(mc, cache, self.now, seed);
        let link = PeerLink {
            me: self.pki.identity(i).expect("a node certificate"),
            peers: PeerTable::default(),
            crl: BTreeSet::new(),
            my_address: if self.announces(i) {
                address_list(i)
            } else {
                String::new()
            },
            version: self.pki.version.clone(),
            info: String::new(),
            pending: Default::default(),
            random: sim_random,
        };
        let mut config = NetworkConfig::new(self.pki.version.clone(), re6st_proto::PROTOCOL);
        config.registry_prefix = Some(prefix(REGISTRY));
        let core = NodeCore::new(manager, link, config, u64::from(i) + 1, self.time());
        let node = &mut self.nodes[i as usize];
        node.core = Some(core);
        node.next_tick = self.now + 1;
        self.alive[i as usize] = true;
        self.alive_version += 1;
        self.touch(i);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Boot(i) => self.boot(i),
            Event::TunnelResult {
                t,
                attempt,
                opened,
                right_node,
            } => self.tunnel_result(t, attempt, opened, right_node),
            Event::TunnelExit { t, attempt } => {
                if self.current(t, attempt) {
                    if let Some(x) = self.drop_tunnel(t) {
                        let s = prefix(x.server);
                        self.event(x.client, Input::TunnelExited(s));
                    }
                }
            }
            Event::ServedGone { t, attempt } => {
                if self.current(t, attempt) {
                    if let Some(x) = self.drop_tunnel(t) {
                        self.served_gone(x.server, x.client, x.proto);
                    }
                }
            }
            Event::Deliver { from, to, datagram } => self.deliver(from, to, datagram),
        }
    }

    fn current(&self, t: u32, attempt: u64) -> bool {
        self.graph.tunnel(t).is_some_and(|x| x.attempt == attempt)
    }

    /// Forgets a tunnel record, freeing its server slot.
    fn drop_tunnel(&mut self, t: u32) -> Option<Tunnel> {
        let x = self.graph.remove(t)?;
        if x.up {
            let s = &mut self.nodes[x.server as usize].served[x.proto as usize];
            *s = s.saturating_sub(1);
        }
        Some(x)
    }

    fn tunnel_result(&mut self, t: u32, attempt: u64, opened: i64, right_node: bool) {
        if !self.current(t, attempt) {
            return;
        }
        let Some(x) = self.graph.tunnel(t) else {
            return;
        };
        let (c, s, proto) = (x.client, x.server, x.proto as usize);
        let server = &self.nodes[s as usize];
        let answers = self.alive[s as usize] && !server.nat;
        if !answers || !right_node || server.served[proto] >= self.cfg.max_clients {
            self.counts.tunnel_failures += 1;
            // An address nobody answers at: the client's connect timeout.
            // A server that answers but refuses (full, or another node's
            // certificate): as soon as the handshake says so, now.
            let at = if answers {
                self.now
            } else {
                (opened + CONNECT_TIMEOUT).max(self.now)
            };
            self.schedule(at, Event::TunnelExit { t, attempt });
            return;
        }
        self.nodes[s as usize].served[proto] += 1;
        self.graph.link(t);
        self.counts.tunnels_up += 1;
        // The server's connect hook, then the client's route-up hook.
        self.hook(s, Hook::ClientConnect(Self::hook_peer(c, proto as u8)));
        let up = Hook::RouteUp {
            cn: prefix(s).to_subnet(),
            serial: u64::from(s) + 1,
            external_ip: ipv4(c).to_string(),
        };
        self.hook(c, up);
    }

    fn send(&mut self, from: u32, to: u32, datagram: Vec<u8>) {
        self.traffic.sent(&datagram);
        let now = self.now;
        self.schedule(now, Event::Deliver { from, to, datagram });
    }

    /// A datagram reaches its destination if babel has a route to it.
    fn reachable(&mut self, from: u32, to: u32) -> bool {
        if !self.alive[to as usize] || !self.alive[from as usize] {
            return false;
        }
        if self.graph.adj(from).iter().any(|l| l.peer == to) {
            return true;
        }
        self.components().same(from, to)
    }

    /// A datagram reaches its destination's core if babel has a route
    /// to it. What changes a manager's tunnels (kill messages) makes the
    /// node active and not quiet; an address answer makes it active only
    /// (it changes no route); handshakes, queries and versions neither
    /// (the daemon would not dump babeld for them).
    fn deliver(&mut self, from: u32, to: u32, datagram: Vec<u8>) {
        if !self.reachable(from, to) {
            self.traffic.undeliverable += 1;
            return;
        }
        let kind = classify(&datagram);
        let input = Input::Datagram {
            from: overlay(&self.pki.network, from),
            data: datagram,
        };
        match kind {
            Kind::Message {
                code: Code::KillRequest | Code::KillResponse,
                ..
            } => self.event(to, input),
            Kind::Message {
                code: Code::Address,
                empty: false,
            } => {
                self.nodes[to as usize].active_until = self.now + ACTIVE_S;
                self.input(to, input);
            }
            _ => self.input(to, input),
        }
    }

    /// Whether a node answers address queries with an address.
    fn announces(&self, i: u32) -> bool {
        !self.nodes[i as usize].nat || self.cfg.nat_announces
    }

    /// `getBootstrapPeer`: a random node the registry's own node has a
    /// route to (or itself); `None` when that node has no address to give
    /// or the registry is down.
    fn bootstrap(&mut self, requester: u32) -> Option<(Prefix, String)> {
        if !self.alive[REGISTRY as usize] {
            return None;
        }
        let n = self.cfg.nodes;
        let size = {
            let c = self.components();
            c.sizes[c.label[REGISTRY as usize] as usize]
        };
        let mut pick = REGISTRY;
        if size > 1 {
            if u64::from(size) * 16 >= u64::from(n) {
                loop {
                    let r = self.rng.below(u64::from(n)) as u32;
                    if self.comp.same(r, REGISTRY) {
                        pick = r;
                        break;
                    }
                }
            } else {
                let members: Vec<u32> = (0..n).filter(|&r| self.comp.same(r, REGISTRY)).collect();
                pick = members[self.rng.below(members.len() as u64) as usize];
            }
        }
        if pick == requester {
            pick = REGISTRY;
        }
        if pick == requester || !self.announces(pick) {
            return None;
        }
        Some((prefix(pick), address_list(pick)))
    }

    /// Carries out one of node `i`'s effects, as the daemon's shell
    /// would, reporting back to its core what the shell would report.
    fn act(&mut self, i: u32, effect: Effect) {
        let now = self.now;
        match effect {
            Effect::StartTunnel {
                prefix: p,
                iface,
                address,
            } => {
                let Some(j) = index(&p) else { return };
                self.counts.tunnel_attempts += 1;
                self.stir(i);
                // The daemon stops any OpenVPN client to the same peer
                // first.
                self.stop_client(i, j);
                self.attempts += 1;
                let proto = u8::from(address.proto.is_tcp());
                let t = self.graph.attempt(i, j, &iface, proto, self.attempts);
                let event = Event::TunnelResult {
                    t,
                    attempt: self.attempts,
                    opened: now,
                    right_node: node_of_ip(address.ip) == Some(j),
                };
                self.schedule(now + self.cfg.tunnel_delay, event);
            }
            Effect::StopTunnel { prefix: p, .. } => {
                let Some(j) = index(&p) else { return };
                self.counts.tunnel_closes += 1;
                self.stir(i);
                self.stop_client(i, j);
            }
            Effect::SendDatagram { to, data } => {
                if let Some(j) = node_of_overlay(&self.pki.network, to.ip()) {
                    self.send(i, j, data);
                }
            }
            // Babel silenced on a tunnel being drained: what the routes
            // see. (The routes the daemon holds in the kernel meanwhile
            // are not modelled: the view is babel's.)
            Effect::MuteBabel { iface, mute } => {
                if let Some(t) = self.graph.by_iface(i, &iface) {
                    self.graph.set_drained(t, mute);
                }
            }
            Effect::AskBootstrap => {
                self.counts.bootstrap_requests += 1;
                let answer = self.bootstrap(i);
                if answer.is_some() {
                    self.counts.bootstrap_answers += 1;
                }
                let answer = answer.map(|(p, a)| (p.to_string(), a));
                self.event(i, Input::Bootstrap(Ok(answer)));
            }
            // The simulated network's configuration never changes: a
            // fetch finds nothing newer, or fails with the registry down
            // (the core then tries again a minute later).
            Effect::FetchConfig => {
                self.counts.config_checks += 1;
                let Some(ours) = self.nodes[i as usize].core.as_ref().map(|c| c.config()) else {
                    return;
                };
                let answer = if self.alive[REGISTRY as usize] {
                    Ok(Box::new(ours.clone()))
                } else {
                    Err("the registry does not answer".to_owned())
                };
                self.input(i, Input::ConfigFetched(answer));
            }
            Effect::DumpBabel => {
                self.counts.dumps += 1;
                let client_count = self.cfg.client_count;
                if self
                    .mgr(i)
                    .is_some_and(|m| m.tunnels().count() < client_count)
                {
                    self.counts.underconnected_dumps += 1;
                    if now >= self.nodes[i as usize].quiet_from && !self.graph.drains(i) {
                        self.counts.quiet_underconnected_dumps += 1;
                    }
                }
                let view = self.router.view(&self.graph, i);
                // A dump is no event (the node stays idle).
                self.input(i, Input::Dumped(Some(view)));
            }
            Effect::CheckRenewal => self.input(
                i,
                Input::RenewalDone {
                    retry_tomorrow: false,
                },
            ),
            Effect::CompareKernelRoutes => self.input(i, Input::KernelRoutesCompared),
            Effect::SaveCache => self.input(i, Input::CacheSaved(Ok(()))),
            // No babeld, kernel, OpenVPN servers or registry calls beyond
            // the above: nothing else here reports back, and nothing in
            // the simulated network makes a core ask for a restart.
            Effect::Log { .. }
            | Effect::AnswerHook { .. }
            | Effect::PeerSawUs(_)
            | Effect::StartBabeld
            | Effect::UseConfig(_)
            | Effect::CheckServers
            | Effect::RestartServers
            | Effect::RestartBabeld
            | Effect::DropServed(_)
            | Effect::UseNewCert
            | Effect::Reexec
            | Effect::TellBabel(_)
            | Effect::ExchangeTables { .. }
            | Effect::HoldRoutes { .. } => {}
        }
    }

    /// The nodes a loss would kill now (never the registry's node: its
    /// loss is [`SimConfig::registry_down`]).
    pub fn choose_victims(&mut self, loss: Loss) -> Vec<u32> {
        let mut candidates: Vec<u32> = (0..self.cfg.nodes)
            .filter(|&i| self.alive[i as usize] && i != REGISTRY)
            .collect();
        let k = (loss.fraction * self.alive_count() as f64).round() as usize;
        match loss.kind {
            LossKind::Random => self.rng.shuffle(&mut candidates),
            LossKind::Targeted => {
                let mut keyed: Vec<(Reverse<usize>, u64, u32)> = candidates
                    .iter()
                    .map(|&i| (Reverse(self.graph.degree(i)), self.rng.next_u64(), i))
                    .collect();
                keyed.sort_unstable();
                candidates = keyed.into_iter().map(|(_, _, i)| i).collect();
            }
        }
        candidates.truncate(k);
        candidates
    }

    /// Nodes die at once. Their peers' OpenVPN notice after the ping
    /// timeout; babel's routes through them vanish at once.
    pub fn kill(&mut self, victims: &[u32]) {
        let timeout = self.cfg.timeout();
        if victims.contains(&REGISTRY) && self.alive[REGISTRY as usize] {
            // Everybody's babeld flushes its route to the registry's node,
            // which the daemon's monitor watches.
            for i in 0..self.cfg.nodes {
                if i != REGISTRY && self.alive[i as usize] {
                    self.event(i, Input::RoutingChanged);
                }
            }
        }
        for &v in victims {
            if !self.alive[v as usize] {
                continue;
            }
            self.alive[v as usize] = false;
            self.alive_version += 1;
            // Kept, not freed: freeing thousands of managers' routing views
            // at once fragments glibc's heap so badly that later large
            // allocations crawl (most of the run's time went to malloc).
            if let Some(core) = self.nodes[v as usize].core.take() {
                self.graveyard.push(core);
            }
            let tunnels: Vec<u32> = self.graph.of_node(v).to_vec();
            for t in tunnels {
                let Some(x) = self.graph.tunnel(t) else {
                    continue;
                };
                let (c, s, up, attempt) = (x.client, x.server, x.up, x.attempt);
                self.graph.unlink(t);
                let other = if c == v { s } else { c };
                if up && self.alive[other as usize] {
                    // babeld flushes the neighbour (as the routes through
                    // it, at once here) and its monitor tells the daemon.
                    self.event(other, Input::RoutingChanged);
                }
                if !self.alive[other as usize] || (c == v && !up) {
                    self.drop_tunnel(t);
                } else if up && c == v {
                    self.schedule(self.now + timeout, Event::ServedGone { t, attempt });
                } else if up {
                    self.schedule(self.now + timeout, Event::TunnelExit { t, attempt });
                }
                // A pending attempt to the dead server fails on its own.
            }
        }
    }
}
