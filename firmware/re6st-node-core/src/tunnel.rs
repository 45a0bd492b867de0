//! The tunnel manager's decisions (sans-IO).
//!
//! At every refresh (`tunnel_refresh` seconds after the last tunnel
//! attempt, as upstream) the least useful client tunnel (fewest nodes
//! routed through it, never a `--neighbour`) is drained and closed, and new tunnels go to random *distant* peers (known through
//! babel but not direct neighbours), so the graph keeps changing while
//! staying connected. Without a route to the registry the node bootstraps
//! from its cache, then from the registry's `getBootstrapPeer`.
//!
//! Draining, with stock babeld: our babeld stops sending on the tunnel's
//! tap (its hellos stop getting through; the data still flows), so the
//! peer's link-quality estimate of us falls, its IHUs tell our babeld the
//! same, and routes move away from both ends. Once nothing of ours goes
//! through it, we ask the peer to close (code 2). The peer answers (code
//! 3) once its own routes through us moved away too (its side is a tap
//! shared by all the clients of one server, so it cannot silence itself:
//! it waits for our silence to show), and we close on that answer or
//! after a timeout.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use re6st_proto::address::{parse_list, Address, Proto};
use re6st_proto::prefix::Prefix;

use crate::peer_cache::PeerCache;

#[derive(Debug, Clone)]
pub struct Config {
    pub me: Prefix,
    pub registry: Option<Prefix>,
    pub client_count: usize,
    /// Seconds between two refreshes.
    pub tunnel_refresh: i64,
    /// OpenVPN ping-exit / peer timeout (4 × hello).
    pub timeout: i64,
    /// `--neighbour`: peers we always keep a tunnel to.
    pub neighbours: BTreeSet<Prefix>,
    pub disabled: BTreeSet<Proto>,
    pub countries: CountryRule,
}

/// The network's `same_country` rule, from our side: the countries that
/// keep their tunnels inside, and ours.
#[derive(Debug, Clone, Default)]
pub struct CountryRule {
    pub same_country: BTreeSet<String>,
    pub mine: Option<String>,
}

impl CountryRule {
    /// Whether we may tunnel to an address announced in `country`. A node
    /// of a listed country tunnels only at home; the others never into a
    /// listed country. Unknown countries (ours or the peer's) are allowed,
    /// as upstream does.
    pub fn allows(&self, country: Option<&str>) -> bool {
        let (Some(mine), Some(theirs)) = (self.mine.as_deref(), country) else {
            return true;
        };
        if self.same_country.contains(mine) {
            theirs == mine
        } else {
            !self.same_country.contains(theirs)
        }
    }
}

/// What babeld says, reduced to what the manager needs.
#[derive(Debug, Clone, Default)]
pub struct RoutingView {
    /// Node prefixes babel has a route to.
    pub known: BTreeSet<Prefix>,
    /// Direct neighbours, by their own prefix (the routes through each are
    /// counted in `links`: which nodes they lead to is not kept, a copy of
    /// the whole routing table the manager never read).
    pub neighbours: BTreeSet<Prefix>,
    /// Installed node routes per tunnel interface.
    pub routes_per_iface: BTreeMap<String, usize>,
    /// Each neighbour known by its own prefix, per interface: the number
    /// of installed node routes through it there. (A peer may be both our
    /// client and our server: `neighbours` merges both links.)
    pub links: BTreeMap<(String, Prefix), usize>,
    /// Nodes that are babel neighbours on a LAN interface (`-i`): no
    /// tunnel is needed to reach them.
    pub lan_neighbours: BTreeSet<Prefix>,
}

/// A client tunnel, for the status command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelInfo {
    pub peer: Prefix,
    pub iface: String,
    /// `connecting`, `established`, `draining` or `closing`.
    pub state: &'static str,
    /// The address in use (or being tried).
    pub address: Option<String>,
    /// Installed node routes through it.
    pub routes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start OpenVPN to `prefix` on `iface` with the first of `addresses`.
    Open {
        prefix: Prefix,
        iface: String,
        address: Address,
    },
    /// Stop the OpenVPN client to `prefix` (its tap stays for reuse).
    Close { prefix: Prefix, iface: String },
    /// Ask `prefix` for its addresses (peer message code 1).
    QueryAddress(Prefix),
    /// Send a tunnel kill request (2) or response (3).
    SendKill { prefix: Prefix, code: u8 },
    /// Start draining a tunnel's interface (`drain`), or stop: the drain
    /// was given up, or the tunnel closed and its tap is free again.
    Drain { iface: String, drain: bool },
    /// Call `getBootstrapPeer` and report with [`Manager::on_bootstrap`].
    RequestBootstrap,
    /// Dump babeld and report with [`Manager::on_routes`].
    RequestDump,
    /// Fetch the network configuration from the registry: we are cut
    /// off, maybe because of a version we missed (e.g. one revoking our
    /// certificate, which our peers learnt before telling us).
    CheckConfig,
}

#[derive(Debug, Clone)]
struct Connection {
    iface: String,
    addresses: Vec<Address>,
    /// Index of the address being tried; `None` once established.
    trying: Option<usize>,
    /// The address that worked, once established.
    using: Option<usize>,
    serial: Option<u64>,
    /// Its OpenVPN is being restarted with our new certificate: when it
    /// exits, the tunnel opens again to the same peer on the same tap.
    restarting: bool,
    /// It exited while our revoked certificate was being renewed (the
    /// peer dropped the revoked one): it opens again to the same peer on
    /// the same tap with the new one.
    awaiting_cert: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillState {
    /// babel silenced on it; waiting for routes to move away.
    Draining,
    /// Kill request sent; waiting for the peer's answer.
    Requested,
}

#[derive(Debug, Clone)]
struct Killer {
    state: KillState,
    deadline: i64,
}

/// Seconds after which the routing view is refreshed anyway. What must
/// be seen sooner comes through babeld's monitor (a neighbour coming or
/// going, on a tunnel or the LAN; the route to the registry's node: see
/// [`Manager::on_routing_changed`]) or through our own events.
pub const ROUTES_MAX_AGE: i64 = 60;

/// Seconds an OpenVPN client waits for its peer's address to answer (the
/// TCP connection, or over UDP the first packet back) before it gives up
/// and the next address or peer is tried (`--connect-timeout`).
/// OpenVPN's default, 120 s, held a tunnel slot two minutes per dead
/// address, so a node whose cached peers had died took minutes to find a
/// live one; a live peer answers within a round trip, and 15 s leaves
/// room for four SYNs on a lossy link. The simulator gives failed
/// attempts to dead addresses this long.
pub const CONNECT_TIMEOUT: i64 = 15;

/// Fewest seconds between two dumps brought by babeld's monitor.
const MONITOR_DUMP_GAP: i64 = 5;

/// Longest interval between two dumps of a node below its client count
/// while its dumps show nothing new (doubling from 1 s after a change).
const UNDER_CONNECTED_DUMP_MAX: i64 = 60;

/// Seconds between two bootstrap requests while we know no node.
const BOOTSTRAP_RETRY: i64 = 5;

/// Seconds between two routing views while a tunnel is being drained.
const DRAIN_POLL: i64 = 2;

/// Seconds between two routing views while a `--neighbour` has no tunnel
/// of ours: it gets one as soon as babel knows it.
const NEIGHBOUR_POLL: i64 = 5;

/// Seconds without any established tunnel after which we suspect the
/// network refuses us and check the configuration.
const LONELY_CHECK: i64 = 15;

/// Seconds between two configuration checks of a cut-off node.
const CONFIG_CHECK_EVERY: i64 = 60;

/// Mean seconds between two background address queries (peer message
/// code 1) to nodes we have a route to, which keep the peer cache filled
/// with live peers: a node cut off by a loss, the registry down, has only
/// its cache to rejoin with (see [`Manager::probe`]). Each costs one query
/// and, from a node that announces an address, one answer.
pub const PROBE_EVERY: i64 = 30;

/// A cached peer seen working this recently is not asked again.
pub const PROBE_FRESH: i64 = 1800;

/// Most known nodes looked at to pick the next one to ask.
const PROBE_SCAN: usize = 64;

pub struct Manager {
    cfg: Config,
    cache: PeerCache,
    connections: BTreeMap<Prefix, Connection>,
    /// Peers connected to our servers.
    served: BTreeSet<Prefix>,
    killing: BTreeMap<Prefix, Killer>,
    /// Served peers that asked to close their tunnel: the deadline by
    /// which we agree even if routes still go through them.
    agreeing: BTreeMap<Prefix, i64>,
    /// Peers whose tunnel we just drained and closed, until when they are
    /// not chosen again (reconnecting at once would waste the drain).
    replaced: BTreeMap<Prefix, i64>,
    /// Free taps, each with the peer its last tunnel went to.
    free_ifaces: Vec<(String, Prefix)>,
    next_iface: usize,
    /// Peers asked for their address, not answered yet.
    connecting: BTreeSet<Prefix>,
    /// `--neighbour`s we opened a tunnel to or asked for their address,
    /// and when we may try again (one entry per configured neighbour).
    neighbour_retry_at: BTreeMap<Prefix, i64>,
    /// Until when not to ask the registry for a bootstrap peer again.
    bootstrap_quiet_until: i64,
    /// Until when not to ask the registry again while we know nobody.
    bootstrap_retry_at: i64,
    /// Whether we believe we are cut from the registry.
    disconnected: bool,
    /// Since when no tunnel is established, either way.
    lonely_since: Option<i64>,
    /// A tunnel was established since we were last alone.
    was_connected: bool,
    /// Until when not to ask for another configuration check.
    config_check_at: i64,
    /// Our certificate is revoked and being renewed: until when tunnels
    /// that exit wait for the new one (see [`Self::on_own_revocation`]).
    renewing_until: Option<i64>,
    next_refresh: i64,
    crl: BTreeSet<u64>,
    actions: VecDeque<Action>,
    last_view: RoutingView,
    /// When the last babel dump arrived.
    last_routes: i64,
    /// Seconds between two dumps while below the client count: 1 after a
    /// change, doubled by each dump that shows nothing new.
    dump_every: i64,
    /// babeld's monitor told of a change since the last dump.
    routing_changed: bool,
    /// When to send the next background address query, and the last node
    /// asked: the queries sweep the known nodes in prefix order from there.
    probe_at: i64,
    probe_cursor: Prefix,
    /// The time of the last tick or routing view (the clock of
    /// [`Self::on_address`] and [`Self::on_tunnel_up`], which get none).
    clock: i64,
    rng: u64,
}

impl Manager {
    pub fn new(cfg: Config, cache: PeerCache, now: i64, seed: u64) -> Manager {
        let cfg_me = cfg.me;
        Manager {
            next_refresh: now + cfg.tunnel_refresh,
            cfg,
            cache,
            connections: BTreeMap::new(),
            served: BTreeSet::new(),
            killing: BTreeMap::new(),
            agreeing: BTreeMap::new(),
            replaced: BTreeMap::new(),
            free_ifaces: Vec::new(),
            next_iface: 1,
            connecting: BTreeSet::new(),
            neighbour_retry_at: BTreeMap::new(),
            bootstrap_quiet_until: 0,
            bootstrap_retry_at: 0,
            disconnected: false,
            lonely_since: None,
            was_connected: false,
            config_check_at: 0,
            renewing_until: None,
            crl: BTreeSet::new(),
            actions: VecDeque::from([Action::RequestDump]),
            last_view: RoutingView::default(),
            last_routes: now,
            dump_every: 1,
            routing_changed: false,
            probe_at: now + PROBE_EVERY,
            probe_cursor: cfg_me,
            clock: now,
            rng: seed | 1,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64: reproducible for a given seed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    pub fn cache(&self) -> &PeerCache {
        &self.cache
    }

    pub fn cache_mut(&mut self) -> &mut PeerCache {
        &mut self.cache
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Client tunnels (established or being set up), by peer.
    pub fn tunnels(&self) -> impl Iterator<Item = (&Prefix, &str)> {
        self.connections.iter().map(|(p, c)| (p, c.iface.as_str()))
    }

    pub fn is_established(&self, prefix: &Prefix) -> bool {
        self.connections
            .get(prefix)
            .is_some_and(|c| c.trying.is_none())
    }

    pub fn served(&self) -> &BTreeSet<Prefix> {
        &self.served
    }

    /// Our client tunnels as the status command shows them.
    pub fn client_tunnels(&self) -> Vec<TunnelInfo> {
        self.connections
            .iter()
            .map(|(p, c)| TunnelInfo {
                peer: *p,
                iface: c.iface.clone(),
                state: match (self.killing.get(p).map(|k| k.state), c.trying) {
                    (Some(KillState::Draining), _) => "draining",
                    (Some(KillState::Requested), _) => "closing",
                    (None, Some(_)) => "connecting",
                    (None, None) => "established",
                },
                address: c
                    .trying
                    .or(c.using)
                    .and_then(|i| c.addresses.get(i))
                    .map(|a| a.to_string()),
                routes: self
                    .last_view
                    .routes_per_iface
                    .get(&c.iface)
                    .copied()
                    .unwrap_or(0),
            })
            .collect()
    }

    /// The routing view of the last babel dump.
    pub fn routing(&self) -> &RoutingView {
        &self.last_view
    }

    /// Our servers restarted: every peer on them is gone (they come back
    /// through the connect hook, if still allowed).
    pub fn clear_served(&mut self) {
        self.served.clear();
        self.agreeing.clear();
    }

    /// A new `tunnel_refresh` from the network configuration.
    pub fn set_tunnel_refresh(&mut self, seconds: i64) {
        self.next_refresh = self.next_refresh - self.cfg.tunnel_refresh + seconds;
        self.cfg.tunnel_refresh = seconds;
    }

    /// Whether we believe we are cut from the registry.
    pub fn is_disconnected(&self) -> bool {
        self.disconnected
    }

    /// When [`Self::tick`] should be called next.
    pub fn next_timeout(&self) -> i64 {
        self.decision_due().min(self.probe_at)
    }

    /// The earliest second at which [`Manager::tick`] acts (asks for a
    /// dump, asks a node for its address, checks the configuration): a
    /// driver that does not tick every second, as the simulator at
    /// thousands of nodes, wakes the manager then and misses nothing.
    pub fn next_wake(&self) -> i64 {
        let after = |gap: i64| self.last_routes.saturating_add(gap);
        let mut t = self.next_timeout().min(after(ROUTES_MAX_AGE));
        if self.routing_changed {
            t = t.min(after(MONITOR_DUMP_GAP));
        }
        if self.connections.len() < self.limit() {
            t = t.min(after(self.dump_every));
            let retry = self.retry_at();
            if self.last_routes < retry {
                t = t.min(retry);
            }
        }
        if !self.killing.is_empty() || !self.agreeing.is_empty() {
            t = t.min(after(DRAIN_POLL));
        }
        if self.neighbour_missing() {
            t = t.min(after(NEIGHBOUR_POLL));
        }
        if self.lonely() && self.cfg.registry != Some(self.cfg.me) {
            t = t.min(match self.lonely_since {
                // The next tick starts counting.
                None => self.clock,
                Some(since) => (since + LONELY_CHECK).max(self.config_check_at),
            });
        }
        t
    }

    /// When a routing view is due for a decision (a refresh, a drain).
    fn decision_due(&self) -> i64 {
        let k = self
            .killing
            .values()
            .map(|k| k.deadline)
            .chain(self.agreeing.values().copied())
            .min()
            .unwrap_or(i64::MAX);
        self.next_refresh.min(k)
    }

    /// Asks for a configuration check, at most every
    /// [`CONFIG_CHECK_EVERY`] seconds.
    fn check_config(&mut self, now: i64) {
        if self.cfg.registry != Some(self.cfg.me) && now >= self.config_check_at {
            self.config_check_at = now + CONFIG_CHECK_EVERY;
            self.actions.push_back(Action::CheckConfig);
        }
    }

    /// Time passes: asks for a babel dump when decisions are due.
    pub fn tick(&mut self, now: i64) {
        self.clock = now;
        if self.renewing_until.is_some_and(|t| now >= t) {
            self.renewal_given_up();
        }
        if now >= self.probe_at {
            self.probe(now);
        }
        let lonely = self.lonely();
        match self.lonely_since {
            _ if !lonely => {
                self.lonely_since = None;
                self.was_connected = true;
            }
            None => {
                self.lonely_since = Some(now);
                // Every tunnel lost (our certificate revoked, the news
                // lost with them?): checked after LONELY_CHECK, whatever
                // check came before we were connected.
                if std::mem::take(&mut self.was_connected) {
                    self.config_check_at = self.config_check_at.min(now + LONELY_CHECK);
                }
            }
            Some(t) if now - t >= LONELY_CHECK => self.check_config(now),
            Some(_) => {}
        }
        // Below our target, a dump every second after a change, backing
        // off while nothing changes; at it, a dump when babeld's monitor
        // tells of a change, and every ROUTES_MAX_AGE anyway.
        let draining = !self.killing.is_empty() || !self.agreeing.is_empty();
        if now >= self.decision_due()
            || (self.routing_changed && now - self.last_routes >= MONITOR_DUMP_GAP)
            || (self.connections.len() < self.limit()
                && (now - self.last_routes >= self.dump_every
                    || (now >= self.retry_at() && self.last_routes < self.retry_at())))
            || now - self.last_routes >= ROUTES_MAX_AGE
            || (draining && now - self.last_routes >= DRAIN_POLL)
            || (self.neighbour_missing() && now - self.last_routes >= NEIGHBOUR_POLL)
        {
            self.actions.push_back(Action::RequestDump);
        }
    }

    /// Asks one node we have a route to for its addresses, in the
    /// background: the answer refreshes the cache (see `on_address`), so
    /// that it holds peers seen alive lately rather than the few learnt
    /// when our tunnels were made, which a loss may all have killed.
    /// Nodes are taken in prefix order from the last one asked (a sweep
    /// of the whole network, starting after our own prefix, so that nodes
    /// spread their queries), skipping those cached and seen working
    /// within [`PROBE_FRESH`], our tunnels' peers (seen when they came up)
    /// and those already asked for a tunnel. A NATed node answers without
    /// an address and is asked again on the next sweep only.
    fn probe(&mut self, now: i64) {
        self.probe_at = now + PROBE_EVERY / 2 + (self.random() % PROBE_EVERY as u64) as i64;
        let known = &self.last_view.known;
        let after = known.range((
            std::ops::Bound::Excluded(self.probe_cursor),
            std::ops::Bound::Unbounded,
        ));
        let mut last = None;
        let mut pick = None;
        for p in after
            .chain(known.range(..=self.probe_cursor))
            .take(PROBE_SCAN)
        {
            last = Some(*p);
            let fresh = self
                .cache
                .last_seen(p)
                .is_some_and(|t| now - t < PROBE_FRESH);
            if *p != self.cfg.me
                && !fresh
                && !self.connections.contains_key(p)
                && !self.connecting.contains(p)
            {
                pick = Some(*p);
                break;
            }
        }
        if let Some(p) = pick.or(last) {
            self.probe_cursor = p;
        }
        if let Some(p) = pick {
            self.actions.push_back(Action::QueryAddress(p));
        }
    }

    /// babeld reports that a neighbour appeared or went away, or news of
    /// the route to the registry's node (its `monitor` stream, filtered:
    /// see `babel::monitor`): any node looks again at its next tick (at
    /// most every [`MONITOR_DUMP_GAP`] seconds), and one below its target
    /// dumps every second again for a while.
    pub fn on_routing_changed(&mut self) {
        self.routing_changed = true;
        self.unsettled();
    }

    /// How many client tunnels we aim at now (see [`Self::limit`]): below
    /// it, dumps come every second after a change; at it, a node has
    /// nothing to do with a fresher view until something happens.
    pub fn tunnel_target(&self) -> usize {
        self.limit()
    }

    /// Something happened that the next dumps will show: dump every
    /// second again while under-connected.
    fn unsettled(&mut self) {
        self.dump_every = 1;
    }

    /// When a dump may lead somewhere new though babel shows nothing new:
    /// the end of a bootstrap back-off, when a node cut from the registry
    /// tries its cache (and the registry) again.
    fn retry_at(&self) -> i64 {
        if self.last_view.known.is_empty() {
            self.bootstrap_retry_at.min(self.bootstrap_quiet_until)
        } else if self.disconnected {
            self.bootstrap_quiet_until
        } else {
            i64::MAX
        }
    }

    /// Whether a `--neighbour` has no tunnel of ours (see connect_neighbours).
    fn neighbour_missing(&self) -> bool {
        self.cfg.neighbours.iter().any(|p| {
            *p != self.cfg.me
                && !self.connections.contains_key(p)
                && !self.last_view.lan_neighbours.contains(p)
        })
    }

    /// Whether no tunnel is established, either way.
    fn lonely(&self) -> bool {
        self.served.is_empty() && self.connections.values().all(|c| c.trying.is_some())
    }

    /// The babel dump arrived: advance drains, refresh, open new tunnels.
    pub fn on_routes(&mut self, now: i64, mut view: RoutingView) {
        self.clock = now;
        self.routing_changed = false;
        if self.lonely() && view.lan_neighbours.is_empty() {
            // Without a tunnel or a LAN neighbour nothing is reachable,
            // whatever babeld still holds (routes through peers that just
            // cut us off linger until they expire): start from the cache.
            view.known.clear();
            view.neighbours.clear();
        }
        // Below the client count, a node that cannot do better (NATed,
        // or knowing nobody new) would otherwise dump every second.
        let same = view.known == self.last_view.known
            && view.lan_neighbours == self.last_view.lan_neighbours
            && view.neighbours == self.last_view.neighbours;
        self.dump_every = if same {
            (self.dump_every * 2).min(UNDER_CONNECTED_DUMP_MAX)
        } else {
            1
        };
        self.last_view = view;
        self.last_routes = now;
        self.advance_killers(now);
        self.advance_agreements(now);
        // A tunnel to a node on our LAN only duplicates the LAN.
        let redundant: Vec<Prefix> = self
            .connections
            .keys()
            .filter(|p| self.last_view.lan_neighbours.contains(p))
            .copied()
            .collect();
        for p in redundant {
            self.close(p);
        }
        self.connect_neighbours(now);
        if now >= self.next_refresh {
            self.remove_one_tunnel(now);
            self.next_refresh = now + self.cfg.tunnel_refresh;
        }
        self.make_new_tunnels(now);
    }

    /// A `--neighbour` babel knows of gets our tunnel at once, even when
    /// every slot is taken (the next refresh drains one that is not a
    /// neighbour's): waiting for a slot to free up took minutes on a busy
    /// machine. Its own tunnel to our server does not count: the peer may
    /// rewire it away at any time, while ours is never drained.
    fn connect_neighbours(&mut self, now: i64) {
        let view = &self.last_view;
        let missing: Vec<Prefix> = self
            .cfg
            .neighbours
            .iter()
            .filter(|p| {
                **p != self.cfg.me
                    && view.known.contains(p)
                    && !view.lan_neighbours.contains(p)
                    && !self.connections.contains_key(p)
                    && self.neighbour_retry_at.get(p).is_none_or(|t| now >= *t)
            })
            .copied()
            .collect();
        for p in missing {
            // A peer that does not answer or refuses us is not hammered.
            self.neighbour_retry_at.insert(p, now + self.cfg.timeout);
            if let Some(address) = self.cache.address(&p).map(str::to_owned) {
                self.make_tunnel(p, &address);
            } else {
                self.actions.push_back(Action::QueryAddress(p));
                self.connecting.insert(p);
            }
        }
    }

    fn limit(&self) -> usize {
        // Not reachable from outside (nobody connects to our servers):
        // keep few tunnels, as upstream.
        if self.served.is_empty() && !self.disconnected {
            self.cfg.client_count.min(2)
        } else {
            self.cfg.client_count
        }
    }

    fn score(&self, prefix: &Prefix) -> (bool, usize) {
        let routed = self
            .connections
            .get(prefix)
            .and_then(|c| self.last_view.routes_per_iface.get(&c.iface))
            .copied()
            .unwrap_or(0);
        (self.cfg.neighbours.contains(prefix), routed)
    }

    fn remove_one_tunnel(&mut self, now: i64) {
        let candidates: Vec<Prefix> = self
            .connections
            .iter()
            .filter(|(p, c)| c.trying.is_none() && !self.killing.contains_key(p))
            .map(|(p, _)| *p)
            .collect();
        let all_neighbours = candidates.iter().all(|p| self.cfg.neighbours.contains(p));
        if candidates.len() < self.limit() || all_neighbours {
            return;
        }
        if let Some(victim) = candidates.into_iter().min_by_key(|p| self.score(p)) {
            let iface = self.connections[&victim].iface.clone();
            self.actions.push_back(Action::Drain { iface, drain: true });
            self.killing.insert(
                victim,
                Killer {
                    state: KillState::Draining,
                    deadline: now + 2 * self.cfg.timeout,
                },
            );
        }
    }

    fn advance_killers(&mut self, now: i64) {
        let prefixes: Vec<Prefix> = self.killing.keys().copied().collect();
        for p in prefixes {
            let Some(c) = self.connections.get(&p) else {
                self.killing.remove(&p);
                continue;
            };
            let iface = c.iface.clone();
            let k = self.killing[&p].clone();
            if now >= k.deadline {
                // Give up draining (or the peer never answered): a
                // request unanswered closes anyway, a drain is undone.
                self.killing.remove(&p);
                match k.state {
                    KillState::Requested => self.replace(now, p),
                    KillState::Draining => self.actions.push_back(Action::Drain {
                        iface,
                        drain: false,
                    }),
                }
                continue;
            }
            // The peer must still be in the view on this tunnel: a view
            // without it says nothing about where routes will settle.
            let drained = self.last_view.links.get(&(iface.clone(), p)) == Some(&0)
                && self
                    .last_view
                    .routes_per_iface
                    .get(&iface)
                    .copied()
                    .unwrap_or(0)
                    == 0;
            if k.state == KillState::Draining && drained {
                self.actions
                    .push_back(Action::SendKill { prefix: p, code: 2 });
                self.killing.insert(
                    p,
                    Killer {
                        state: KillState::Requested,
                        deadline: now + 2 * self.cfg.timeout,
                    },
                );
            }
        }
    }

    /// Answers the served peers that asked to close, once our routes
    /// through them moved away (their raised cost pushes them) or when
    /// waiting longer would make them give up.
    fn advance_agreements(&mut self, now: i64) {
        // Routes through the peer on our servers' taps (not on a tunnel of
        // ours to it, if it also is our server).
        let client_ifaces: BTreeSet<&str> = self
            .connections
            .values()
            .map(|c| c.iface.as_str())
            .collect();
        let routed = |p: &Prefix| -> usize {
            self.last_view
                .links
                .iter()
                .filter(|((iface, q), _)| q == p && !client_ifaces.contains(iface.as_str()))
                .map(|(_, n)| n)
                .sum()
        };
        let ready: Vec<Prefix> = self
            .agreeing
            .iter()
            .filter(|(p, deadline)| now >= **deadline || !self.served.contains(p) || routed(p) == 0)
            .map(|(p, _)| *p)
            .collect();
        for prefix in ready {
            self.agreeing.remove(&prefix);
            if self.served.contains(&prefix) {
                self.actions.push_back(Action::SendKill { prefix, code: 3 });
            }
        }
    }

    /// A peer message with code 2 or 3 from `prefix`.
    pub fn on_kill_message(&mut self, now: i64, prefix: Prefix, code: u8) {
        match code {
            // The client of one of our servers drained its tunnel: agree
            // once our routes through it moved away as well.
            2 if self.served.contains(&prefix) => {
                self.agreeing
                    .entry(prefix)
                    .or_insert(now + self.cfg.timeout);
                self.actions.push_back(Action::RequestDump);
            }
            3 if self
                .killing
                .get(&prefix)
                .is_some_and(|k| k.state == KillState::Requested) =>
            {
                self.replace(now, prefix);
            }
            _ => {}
        }
    }

    /// Closes a drained tunnel; another peer will take its place.
    fn replace(&mut self, now: i64, prefix: Prefix) {
        self.close(prefix);
        self.replaced.insert(prefix, now + self.cfg.tunnel_refresh);
    }

    fn close(&mut self, prefix: Prefix) {
        if let Some(c) = self.connections.remove(&prefix) {
            self.killing.remove(&prefix);
            if c.trying.is_none() {
                self.unsettled();
            }
            self.actions.push_back(Action::Close {
                prefix,
                iface: c.iface.clone(),
            });
            // The tap, free for another tunnel, speaks babel again (babeld
            // itself drops the routes through it once its OpenVPN is gone
            // and the tap loses its carrier: it runs with `-l`).
            self.actions.push_back(Action::Drain {
                iface: c.iface.clone(),
                drain: false,
            });
            self.free_ifaces.push((c.iface, prefix));
        }
    }

    /// A tap for a tunnel to `prefix`: the one its last tunnel used when
    /// free. The tap keeps its MAC address, so the peer's babeld meets
    /// the neighbour it knows again and its routes to us through that
    /// address work at once; a tunnel on another tap is a new neighbour,
    /// and the peer keeps routing to the old one until babeld gives it up
    /// (2 to 3 hellos: 9 to 38 s after a certificate renewal reconnected
    /// every tunnel, in tests/network_changes.rs).
    ///
    /// Another peer takes the tap freed the longest ago: the peers whose
    /// tunnels closed last are the likeliest to come back.
    fn take_iface(&mut self, prefix: Prefix) -> String {
        let oldest = (!self.free_ifaces.is_empty()).then_some(0);
        let i = self
            .free_ifaces
            .iter()
            .rposition(|(_, p)| *p == prefix)
            .or(oldest);
        match i {
            Some(i) => self.free_ifaces.remove(i).0,
            None => {
                let i = format!("re6stnet{}", self.next_iface);
                self.next_iface += 1;
                i
            }
        }
    }

    /// Opens a tunnel to `prefix` if it makes sense; whether it did.
    fn make_tunnel(&mut self, prefix: Prefix, address: &str) -> bool {
        // A served peer already has a tunnel with us (its own), unless it
        // is a `--neighbour`: see make_new_tunnels.
        if prefix == self.cfg.me
            || (self.served.contains(&prefix) && !self.cfg.neighbours.contains(&prefix))
            || self.connections.contains_key(&prefix)
        {
            return false;
        }
        let addresses: Vec<Address> = parse_list(address)
            .addresses
            .into_iter()
            .filter(|a| !self.cfg.disabled.contains(&a.proto))
            .filter(|a| self.cfg.countries.allows(a.country.as_deref()))
            .collect();
        self.cache.connecting(prefix, true);
        let Some(first) = addresses.first().cloned() else {
            return false;
        };
        let iface = self.take_iface(prefix);
        self.actions.push_back(Action::Open {
            prefix,
            iface: iface.clone(),
            address: first,
        });
        self.refresh_after_open();
        self.connections.insert(
            prefix,
            Connection {
                iface,
                addresses,
                trying: Some(0),
                using: None,
                serial: None,
                restarting: false,
                awaiting_cert: false,
            },
        );
        true
    }

    fn make_new_tunnels(&mut self, now: i64) {
        let mut count = self.cfg.client_count.saturating_sub(self.connections.len());
        if count == 0 {
            return;
        }
        self.connecting.clear();
        self.replaced.retain(|_, until| now < *until);
        // Not a clone of the view (a copy of every route, at every call):
        // what is read of it after a `&mut self` call is taken first.
        let view = &self.last_view;
        let known_count = view.known.len();
        let registry_known = self.cfg.registry.is_some_and(|r| view.known.contains(&r));
        // `--neighbour`s have their own path: connect_neighbours.
        let mut distant: Vec<Prefix> = view
            .known
            .iter()
            .filter(|p| {
                !view.neighbours.contains(p)
                    && !self.cfg.neighbours.contains(p)
                    && **p != self.cfg.me
            })
            .filter(|p| !self.replaced.contains_key(p))
            .copied()
            .collect();
        let mut scored: Vec<(u64, Prefix)> = distant.iter().map(|p| (0, *p)).collect();
        for s in &mut scored {
            s.0 = self.random();
        }
        scored.sort();
        distant = scored.into_iter().map(|(_, p)| p).collect();

        let mut use_cache = false;
        match self.cfg.registry {
            Some(r) if r == self.cfg.me => use_cache = distant.is_empty(),
            // A tunnel to the registry's node being tried reaches
            // nothing (the node may be dead): only an established one.
            Some(r) if registry_known || self.is_established(&r) || self.served.contains(&r) => {
                self.disconnected = false;
            }
            Some(_) if now >= self.bootstrap_quiet_until => {
                self.disconnected = true;
                let n = known_count as u64 + 1;
                let backoff = self.cfg.timeout * (1 + (self.random() % n) as i64);
                self.bootstrap_quiet_until = now + backoff;
                use_cache = true;
                if known_count > 0 {
                    // We are not alone to be cut: ask the registry.
                    self.actions.push_back(Action::RequestBootstrap);
                    self.check_config(now);
                }
            }
            _ => {}
        }
        if !use_cache && !distant.is_empty() {
            if self.served.is_empty() {
                count = self
                    .cfg
                    .client_count
                    .min(2)
                    .saturating_sub(self.connections.len())
                    .min(count);
            }
            while count > 0 {
                let Some(peer) = distant.pop() else { break };
                if let Some(address) = self.cache.address(&peer).map(str::to_owned) {
                    if self.make_tunnel(peer, &address) {
                        count -= 1;
                    }
                } else {
                    self.actions.push_back(Action::QueryAddress(peer));
                    self.connecting.insert(peer);
                    count -= 1;
                }
            }
            return;
        }
        if use_cache || known_count == 0 {
            // Start-up or cut off: peers from the cache we have no route to.
            let me = self.cfg.me;
            let mut rng = self.rng;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut made = 0;
            let known = &self.last_view.known;
            let candidates: Vec<(Prefix, String)> = (self.cache.peer_list(&me, false, &mut next))
                .into_iter()
                .filter(|(peer, _)| !known.contains(peer))
                .collect();
            for (peer, address) in candidates {
                if made == count {
                    break;
                }
                if self.make_tunnel(peer, &address) {
                    made += 1;
                }
            }
            self.rng = next();
            if made == 0 && known_count == 0 {
                // Alone: ask the registry, but not at every routing view.
                if self.cfg.registry != Some(me) && now >= self.bootstrap_retry_at {
                    self.actions.push_back(Action::RequestBootstrap);
                    self.bootstrap_retry_at = now + BOOTSTRAP_RETRY;
                    self.check_config(now);
                }
                // Last chance: addresses that already failed.
                for (peer, address) in self.cache.peer_list(&me, true, &mut || 0) {
                    if self.make_tunnel(peer, &address) {
                        break;
                    }
                }
            }
        }
    }

    /// A peer answered our address query: it is alive and we reach it.
    pub fn on_address(&mut self, prefix: Prefix, address: &str) {
        self.learn(prefix, address);
        self.cache.seen(prefix, self.clock);
        let neighbour = self.cfg.neighbours.contains(&prefix)
            && !self.last_view.lan_neighbours.contains(&prefix);
        if self.connecting.remove(&prefix) || neighbour {
            self.make_tunnel(prefix, address);
        }
    }

    /// Caches a peer's addresses (not seen working by us yet).
    fn learn(&mut self, prefix: Prefix, address: &str) {
        let mut r = self.rng;
        self.cache.add_peer(prefix, address, false, &mut || {
            r = r.wrapping_mul(6364136223846793005).wrapping_add(1);
            r
        });
    }

    /// The registry's bootstrap answer.
    pub fn on_bootstrap(&mut self, peer: Option<(Prefix, String)>) {
        if let Some((prefix, address)) = peer {
            if prefix != self.cfg.me && !self.last_view.known.contains(&prefix) {
                self.learn(prefix, &address);
                self.connecting.remove(&prefix);
                self.make_tunnel(prefix, &address);
            }
        }
    }

    /// Our OpenVPN client to `prefix` is up (its certificate's serial).
    pub fn on_tunnel_up(&mut self, prefix: Prefix, serial: u64) {
        if self.crl.contains(&serial) {
            self.close(prefix);
            return;
        }
        let Some(c) = self.connections.get_mut(&prefix) else {
            return;
        };
        self.dump_every = 1;
        // We reach the registry's node now, whatever the last dump said: a
        // full node dumps only every half minute, and `ctl status` (and the
        // bootstrap logic) would say "cut off" until then.
        if self.cfg.registry == Some(prefix) {
            self.disconnected = false;
        }
        let worked = c.trying.and_then(|i| c.addresses.get(i).cloned());
        let first = c.trying == Some(0);
        c.using = c.trying;
        c.trying = None;
        c.serial = Some(serial);
        match worked {
            Some(a) if !first => {
                let mut r = self.rng;
                self.cache.add_peer(prefix, &a.to_string(), true, &mut || {
                    r = r.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    r
                })
            }
            _ => self.cache.connecting(prefix, false),
        }
        self.cache.seen(prefix, self.clock);
    }

    /// A tunnel attempt starts: the next refresh is a whole `tunnel_refresh`
    /// away, as upstream's `resetTunnelRefresh`. A refresh drains the
    /// tunnel with the fewest routes, and one that just opened has none
    /// yet: with a fixed period, 50 of 167 drains in three runs of the
    /// rewiring test took a tunnel younger than 5 s.
    fn refresh_after_open(&mut self) {
        self.next_refresh = self.clock + self.cfg.tunnel_refresh;
    }

    /// Our OpenVPN client to `prefix` exited: retry the next address, or
    /// give up on the peer for this session (but for a restart with our
    /// new certificate: see [`Manager::on_new_certificate`]).
    pub fn on_tunnel_exit(&mut self, prefix: Prefix) {
        let Some(c) = self.connections.get_mut(&prefix) else {
            return;
        };
        let next = if std::mem::take(&mut c.restarting) {
            // Killed to take our new certificate, not failed: the same
            // address again.
            Some(c.trying.or(c.using).unwrap_or(0))
        } else if self.renewing_until.is_some() && !self.killing.contains_key(&prefix) {
            // The peer dropped our revoked certificate: this peer, on this
            // tap, again with the new one (another peer would be a new
            // babel neighbour at both ends, and routes through the old one
            // would wait for babel to give it up).
            c.awaiting_cert = true;
            c.trying = Some(c.trying.or(c.using).unwrap_or(0));
            return;
        } else {
            c.trying.map(|i| i + 1).filter(|&i| i < c.addresses.len())
        };
        match next {
            Some(i) => {
                c.trying = Some(i);
                let action = Action::Open {
                    prefix,
                    iface: c.iface.clone(),
                    address: c.addresses[i].clone(),
                };
                self.actions.push_back(action);
                self.refresh_after_open();
            }
            None => {
                self.close(prefix);
                self.actions.push_back(Action::RequestDump);
            }
        }
    }

    /// A peer connected to (or left) one of our servers.
    pub fn on_served(&mut self, prefix: Prefix, connected: bool) {
        self.unsettled();
        if connected {
            self.served.insert(prefix);
        } else {
            self.served.remove(&prefix);
            self.agreeing.remove(&prefix);
        }
    }

    /// We took a new certificate into use: peers that refused the old one
    /// (a revoked one, say) are worth trying again, and at once. The shell
    /// kills our client tunnels' OpenVPNs to restart them with it: each
    /// opens again to the same peer on the same tap (not to a new peer),
    /// so both ends' babeld meet the neighbour they know and their routes
    /// through it work again at once; a new neighbour would leave the
    /// peer routing to the old one until babeld gives it up (2 to 3
    /// hellos). Not the tunnels being drained: they are going anyway.
    pub fn on_new_certificate(&mut self) {
        self.renewing_until = None;
        self.cache.reset_connecting();
        let mut reopen = Vec::new();
        for (p, c) in self.connections.iter_mut() {
            self.cache.connecting(*p, true);
            if std::mem::take(&mut c.awaiting_cert) {
                // No OpenVPN left to restart: opened here.
                let i = c.trying.unwrap_or(0);
                reopen.push(Action::Open {
                    prefix: *p,
                    iface: c.iface.clone(),
                    address: c.addresses[i].clone(),
                });
            } else {
                c.restarting = !self.killing.contains_key(p);
            }
        }
        if !reopen.is_empty() {
            self.actions.extend(reopen);
            self.refresh_after_open();
        }
        self.bootstrap_quiet_until = 0;
        self.bootstrap_retry_at = 0;
        self.actions.push_back(Action::RequestDump);
    }

    /// Our own certificate is revoked (a new network configuration says
    /// so) and a new one is being asked for: the peers drop the revoked
    /// one, and until the new one comes (or the tunnel timeout passes)
    /// the tunnels they close wait for it instead of going to other
    /// peers.
    pub fn on_own_revocation(&mut self, now: i64) {
        self.renewing_until = Some(now + self.cfg.timeout);
    }

    /// No new certificate within the tunnel timeout: the tunnels waiting
    /// for one close, and their taps go to new tunnels as usual.
    fn renewal_given_up(&mut self) {
        self.renewing_until = None;
        let waiting: Vec<Prefix> = self
            .connections
            .iter()
            .filter(|(_, c)| c.awaiting_cert)
            .map(|(p, _)| *p)
            .collect();
        if !waiting.is_empty() {
            for p in waiting {
                self.close(p);
            }
            self.actions.push_back(Action::RequestDump);
        }
    }

    /// New CRL: tunnels to revoked peers are closed.
    pub fn on_crl(&mut self, crl: BTreeSet<u64>) {
        let revoked: Vec<Prefix> = self
            .connections
            .iter()
            .filter(|(_, c)| c.serial.is_some_and(|s| crl.contains(&s)))
            .map(|(p, _)| *p)
            .collect();
        self.crl = crl;
        for p in revoked {
            self.close(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(i: u32) -> Prefix {
        Prefix::new(u128::from(i), 16).unwrap()
    }

    fn addr(i: u32) -> String {
        format!(
            "198.18.{}.{},1194,udp;198.18.{}.{},1194,tcp",
            i / 250,
            i % 250 + 1,
            i / 250,
            i % 250 + 1
        )
    }

    fn cfg(me: u32, client_count: usize) -> Config {
        Config {
            me: p(me),
            registry: Some(p(0)),
            client_count,
            tunnel_refresh: 60,
            timeout: 20,
            neighbours: BTreeSet::new(),
            disabled: BTreeSet::new(),
            countries: CountryRule::default(),
        }
    }

    fn drain(m: &mut Manager) -> Vec<Action> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    /// The seconds in `from..to` whose tick asks for a configuration check.
    fn config_checks(m: &mut Manager, from: i64, to: i64) -> Vec<i64> {
        (from..to)
            .filter(|t| {
                m.tick(*t);
                drain(m).contains(&Action::CheckConfig)
            })
            .collect()
    }

    /// Babel neighbours that each route only themselves.
    fn direct<const N: usize>(peers: [Prefix; N]) -> BTreeSet<Prefix> {
        peers.into()
    }

    /// A manager reachable from outside (7 uses our server) whose two
    /// client slots hold established tunnels to 1 (re6stnet1) and 2
    /// (re6stnet2), its actions so far drained.
    fn with_tunnels_to_1_and_2(c: Config, cache: PeerCache) -> Manager {
        let mut m = Manager::new(c, cache, 0, 1);
        m.on_served(p(7), true);
        for i in [1, 2] {
            m.make_tunnel(p(i), &addr(i));
            m.on_tunnel_up(p(i), i.into());
        }
        drain(&mut m);
        m
    }

    #[test]
    fn starts_from_cache_then_limits_to_two_when_not_served() {
        let mut cache = PeerCache::new(50);
        for i in 1..=5 {
            cache.add_peer(p(i), &addr(i), false, &mut || 1);
        }
        let mut m = Manager::new(cfg(9, 4), cache, 0, 1);
        m.on_routes(0, RoutingView::default());
        let opens: Vec<_> = drain(&mut m)
            .into_iter()
            .filter(|a| matches!(a, Action::Open { .. }))
            .collect();
        assert_eq!(opens.len(), 4, "start-up from the cache fills client_count");
        // Interfaces are distinct.
        let ifaces: BTreeSet<_> = m.tunnels().map(|(_, i)| i.to_owned()).collect();
        assert_eq!(ifaces.len(), 4);
    }

    #[test]
    fn failing_tunnels_try_next_address_then_give_up() {
        let mut m = Manager::new(cfg(9, 1), PeerCache::new(10), 0, 1);
        assert!(m.make_tunnel(p(1), &addr(1)));
        drain(&mut m);
        m.on_tunnel_exit(p(1));
        let a = drain(&mut m);
        assert!(matches!(&a[0], Action::Open { address, .. } if address.proto == Proto::Tcp));
        m.on_tunnel_exit(p(1));
        assert!(drain(&mut m)
            .iter()
            .any(|a| matches!(a, Action::Close { .. })));
        assert_eq!(
            m.cache().address(&p(1)),
            None,
            "failed peer skipped this session"
        );
        // Disabled protocols are never used; ourselves never.
        let mut c = cfg(9, 2);
        c.disabled = [Proto::Udp, Proto::Tcp].into();
        let mut m = Manager::new(c, PeerCache::new(10), 0, 1);
        assert!(!m.make_tunnel(p(1), &addr(1)));
        assert!(!m.make_tunnel(p(9), &addr(9)));
    }

    #[test]
    fn same_country_keeps_listed_countries_at_home() {
        let rule = |mine: Option<&str>| CountryRule {
            same_country: ["FR".to_string()].into(),
            mine: mine.map(str::to_owned),
        };
        assert!(rule(Some("FR")).allows(Some("FR")));
        assert!(!rule(Some("FR")).allows(Some("DE")));
        assert!(!rule(Some("DE")).allows(Some("FR")));
        assert!(rule(Some("DE")).allows(Some("JP")));
        assert!(rule(None).allows(Some("FR")), "our country unknown");
        assert!(rule(Some("FR")).allows(None), "theirs unknown");
        // In the manager: only the allowed addresses are tried.
        let mut c = cfg(9, 2);
        c.countries = rule(Some("DE"));
        let mut m = Manager::new(c, PeerCache::new(10), 0, 1);
        assert!(!m.make_tunnel(p(1), "198.18.0.2,1194,tcp,FR"));
        assert!(m.make_tunnel(p(2), "198.18.0.3,1194,tcp,FR;198.18.0.4,1194,tcp,DE"));
        assert!(drain(&mut m).iter().any(|a| matches!(
            a,
            Action::Open { address, .. } if address.ip.to_string() == "198.18.0.4"
        )));
    }

    #[test]
    fn revoked_peers_are_closed() {
        let mut m = Manager::new(cfg(9, 2), PeerCache::new(10), 0, 1);
        m.make_tunnel(p(1), &addr(1));
        m.make_tunnel(p(2), &addr(2));
        m.on_tunnel_up(p(1), 11);
        m.on_tunnel_up(p(2), 12);
        drain(&mut m);
        m.on_crl([12].into());
        assert_eq!(
            drain(&mut m),
            vec![
                Action::Close {
                    prefix: p(2),
                    iface: "re6stnet2".into()
                },
                // The tap speaks babel again.
                Action::Drain {
                    iface: "re6stnet2".into(),
                    drain: false
                }
            ]
        );
        m.make_tunnel(p(3), &addr(3));
        m.on_tunnel_up(p(3), 12);
        assert!(drain(&mut m)
            .iter()
            .any(|a| matches!(a, Action::Close { prefix, .. } if *prefix == p(3))));
    }

    #[test]
    fn a_peer_gets_back_the_tap_its_last_tunnel_used() {
        let mut m = with_tunnels_to_1_and_2(cfg(9, 3), PeerCache::new(10));
        m.make_tunnel(p(4), &addr(4));
        // All closed (a renewed certificate reconnects every tunnel), 4's
        // first, 1's before 2's: a stack of free taps would give 1 the
        // tap of 2.
        for i in [4, 1, 2] {
            m.close(p(i));
        }
        for i in [1, 3, 2] {
            m.make_tunnel(p(i), &addr(i));
        }
        let taps: BTreeMap<Prefix, String> = m.tunnels().map(|(p, i)| (*p, i.to_owned())).collect();
        assert_eq!(taps[&p(1)], "re6stnet1");
        assert_eq!(taps[&p(2)], "re6stnet2");
        // A new peer takes the tap freed first.
        assert_eq!(taps[&p(3)], "re6stnet3");
    }

    #[test]
    fn a_tunnel_attempt_puts_the_next_refresh_a_whole_period_away() {
        let mut m = with_tunnels_to_1_and_2(cfg(9, 2), PeerCache::new(10));
        let mut view = RoutingView::default();
        view.routes_per_iface.insert("re6stnet1".into(), 5);
        view.routes_per_iface.insert("re6stnet2".into(), 3);
        // At 50, 2's tunnel ends and 3's takes its tap: it has no route
        // yet when the refresh of 60 would have come.
        m.on_routes(50, view.clone());
        m.on_tunnel_exit(p(2));
        m.make_tunnel(p(3), &addr(3));
        m.on_tunnel_up(p(3), 13);
        drain(&mut m);
        view.routes_per_iface.insert("re6stnet2".into(), 0);
        for t in [60, 70, 100] {
            m.on_routes(t, view.clone());
            let a = drain(&mut m);
            assert!(
                !a.iter()
                    .any(|a| matches!(a, Action::Drain { drain: true, .. })),
                "{t}: {a:?}"
            );
        }
        // A whole period after the attempt, a refresh again.
        m.on_routes(110, view.clone());
        assert!(drain(&mut m).contains(&Action::Drain {
            iface: "re6stnet2".into(),
            drain: true
        }));
    }

    #[test]
    fn refresh_drains_the_least_useful_tunnel_never_a_neighbour() {
        let mut c = cfg(9, 2);
        c.neighbours = [p(1)].into();
        let mut m = with_tunnels_to_1_and_2(c, PeerCache::new(10));
        let mut view = RoutingView::default();
        view.routes_per_iface.insert("re6stnet1".into(), 0); // neighbour, useless
        view.routes_per_iface.insert("re6stnet2".into(), 5);
        m.on_routes(60, view.clone());
        let a = drain(&mut m);
        assert!(
            a.contains(&Action::Drain {
                iface: "re6stnet2".into(),
                drain: true
            }),
            "{a:?}"
        );
        // Without the peer in the view on that tunnel, nothing says where
        // routes will settle: too early to ask the peer.
        view.routes_per_iface.insert("re6stnet2".into(), 0);
        m.on_routes(61, view.clone());
        assert!(!drain(&mut m)
            .iter()
            .any(|a| matches!(a, Action::SendKill { .. })));
        // The peer is back on that tunnel, with nothing routed through it:
        // kill request; the answer closes it.
        view.links.insert(("re6stnet-tcp".into(), p(2)), 0);
        m.on_routes(62, view.clone());
        assert!(
            !drain(&mut m)
                .iter()
                .any(|a| matches!(a, Action::SendKill { .. })),
            "seen on another link only"
        );
        view.links.insert(("re6stnet2".into(), p(2)), 0);
        m.on_routes(62, view.clone());
        assert!(drain(&mut m).contains(&Action::SendKill {
            prefix: p(2),
            code: 2
        }));
        m.on_kill_message(62, p(2), 3);
        let a = drain(&mut m);
        assert!(a.contains(&Action::Close {
            prefix: p(2),
            iface: "re6stnet2".into()
        }));
        assert!(a.contains(&Action::Drain {
            iface: "re6stnet2".into(),
            drain: false
        }));
        // The freed slot does not go back to 2 at once; a refresh later it may.
        let view = RoutingView {
            known: [p(0), p(1), p(2)].into(),
            neighbours: [p(0), p(1)].into(),
            ..Default::default()
        };
        let opened = |a: Vec<Action>| -> Vec<Action> {
            a.into_iter()
                .filter(|a| matches!(a, Action::QueryAddress(_) | Action::Open { .. }))
                .collect()
        };
        m.on_routes(63, view.clone());
        assert_eq!(opened(drain(&mut m)), vec![]);
        m.on_routes(62 + 60, view);
        assert_eq!(opened(drain(&mut m)), vec![Action::QueryAddress(p(2))]);
    }

    #[test]
    fn served_peers_get_an_answer_once_routes_moved_away() {
        let mut m = Manager::new(cfg(9, 2), PeerCache::new(10), 0, 1);
        m.on_served(p(7), true);
        m.on_served(p(8), true);
        let mut view = RoutingView::default();
        view.links.insert(("re6stnet-tcp".into(), p(7)), 2);
        view.links.insert(("re6stnet-udp".into(), p(8)), 1);
        m.on_routes(0, view.clone());
        drain(&mut m);
        let answers = |a: Vec<Action>| -> Vec<Prefix> {
            a.into_iter()
                .filter_map(|a| match a {
                    Action::SendKill { prefix, code: 3 } => Some(prefix),
                    _ => None,
                })
                .collect()
        };
        m.on_kill_message(1, p(7), 2);
        m.on_kill_message(1, p(8), 2);
        assert!(drain(&mut m).contains(&Action::RequestDump));
        // Routes still go through both: no answer yet, but frequent dumps.
        m.on_routes(1, view.clone());
        assert!(answers(drain(&mut m)).is_empty());
        m.tick(3);
        assert_eq!(drain(&mut m), vec![Action::RequestDump]);
        // 7's cost went up and babel moved away from it: agreed.
        view.links.insert(("re6stnet-tcp".into(), p(7)), 0);
        m.on_routes(3, view.clone());
        assert_eq!(answers(drain(&mut m)), vec![p(7)]);
        // 8 never drains: agreed anyway after the timeout, before the
        // peer gives up (it waits twice as long).
        m.on_routes(20, view.clone());
        assert!(answers(drain(&mut m)).is_empty());
        m.on_routes(21, view.clone());
        assert_eq!(answers(drain(&mut m)), vec![p(8)]);
        // Nobody else: no answer to a peer that is not ours.
        m.on_kill_message(22, p(5), 2);
        m.on_routes(22, view);
        assert!(answers(drain(&mut m)).is_empty());
    }

    #[test]
    fn unreachable_registry_asks_for_bootstrap_with_backoff() {
        let mut m = Manager::new(cfg(9, 2), PeerCache::new(10), 0, 1);
        let view = RoutingView {
            known: [p(3)].into(),
            ..Default::default()
        };
        m.on_routes(0, view.clone());
        assert!(drain(&mut m).contains(&Action::RequestBootstrap));
        m.on_routes(1, view.clone());
        assert!(
            !drain(&mut m).contains(&Action::RequestBootstrap),
            "back-off"
        );
        m.on_bootstrap(Some((p(4), addr(4))));
        assert!(drain(&mut m)
            .iter()
            .any(|a| matches!(a, Action::Open { prefix, .. } if *prefix == p(4))));
        // Knowing nobody, with nobody usable in the cache: the registry is
        // asked every few seconds, not at every routing view.
        let mut m = Manager::new(cfg(9, 2), PeerCache::new(10), 0, 1);
        let asks = (0..10)
            .filter(|t| {
                m.on_routes(*t, RoutingView::default());
                drain(&mut m).contains(&Action::RequestBootstrap)
            })
            .count();
        assert_eq!(asks, 2, "at 0 s and 5 s");
    }

    /// A NATed node (nobody on our servers) whose tunnel to the
    /// registry's node is only being tried (to a dead node, say) does not
    /// reach the registry: it asks for a bootstrap peer and uses its whole
    /// client count, from the cache.
    #[test]
    fn a_pending_tunnel_to_the_registry_does_not_reach_it() {
        let mut cache = PeerCache::new(10);
        for i in 4..=6 {
            cache.add_peer(p(i), &addr(i), false, &mut || 1);
        }
        let mut m = Manager::new(cfg(9, 4), cache, 0, 1);
        assert!(m.make_tunnel(p(0), &addr(0)));
        assert!(m.make_tunnel(p(1), &addr(1)));
        m.on_tunnel_up(p(1), 1);
        drain(&mut m);
        let view = RoutingView {
            known: [p(1), p(2), p(3)].into(),
            neighbours: [p(1)].into(),
            ..Default::default()
        };
        m.on_routes(100, view);
        let actions = drain(&mut m);
        assert!(m.is_disconnected(), "{actions:?}");
        assert!(actions.contains(&Action::RequestBootstrap), "{actions:?}");
        let opened = actions
            .iter()
            .filter(|a| matches!(a, Action::Open { .. }))
            .count();
        assert_eq!(opened, 2, "up to the client count (4): {actions:?}");
    }

    #[test]
    fn an_established_tunnel_to_the_registry_reaches_it_before_babel_knows() {
        let mut m = Manager::new(cfg(9, 4), PeerCache::new(10), 0, 1);
        assert!(m.make_tunnel(p(0), &addr(0)));
        m.on_tunnel_up(p(0), 0);
        drain(&mut m);
        m.on_routes(
            100,
            RoutingView {
                known: [p(2)].into(),
                ..Default::default()
            },
        );
        assert!(!m.is_disconnected());
        assert!(!drain(&mut m).contains(&Action::RequestBootstrap));
    }

    #[test]
    fn a_tunnel_to_the_registry_coming_up_ends_the_cut_at_once() {
        let mut m = Manager::new(cfg(9, 4), PeerCache::new(10), 0, 1);
        m.on_routes(
            100,
            RoutingView {
                known: [p(2)].into(),
                ..Default::default()
            },
        );
        assert!(m.is_disconnected());
        drain(&mut m);
        assert!(m.make_tunnel(p(0), &addr(0)));
        m.on_tunnel_up(p(0), 0);
        assert!(!m.is_disconnected(), "no dump needed to know it");
    }

    /// Dumps asked for by `tick` at each second of `from..to`, each
    /// answered with `view`.
    fn dumps_between(m: &mut Manager, from: i64, to: i64, view: &RoutingView) -> Vec<i64> {
        (from..to)
            .filter(|t| {
                m.tick(*t);
                let dumped = drain(m).contains(&Action::RequestDump);
                if dumped {
                    m.on_routes(*t, view.clone());
                    drain(m);
                }
                dumped
            })
            .collect()
    }

    /// A node below its client count that cannot do better (every known
    /// node is a neighbour already) backs off its babel dumps while they
    /// show nothing new; a change babel reports, or a new view, brings
    /// them back at once.
    #[test]
    fn an_under_connected_node_backs_off_its_dumps_while_nothing_changes() {
        let mut c = cfg(9, 4);
        c.registry = Some(p(1));
        let mut m = with_tunnels_to_1_and_2(c, PeerCache::new(10));
        let view = RoutingView {
            known: [p(1), p(2), p(7)].into(),
            neighbours: direct([p(1), p(2), p(7)]),
            ..Default::default()
        };
        m.on_routes(0, view.clone());
        drain(&mut m);
        assert!(m.tunnels().count() < 4, "under-connected");
        let quiet = dumps_between(&mut m, 1, 240, &view);
        let last_minute = quiet.iter().filter(|t| **t >= 180).count();
        assert!(last_minute <= 2, "{last_minute} dumps a minute: {quiet:?}");
        // babel says something changed: a dump at the next tick.
        m.on_routing_changed();
        assert_eq!(dumps_between(&mut m, 240, 241, &view), vec![240]);
        // A view that differs from the last one: dumps every second again.
        let mut grown = view.clone();
        grown.known.insert(p(3));
        grown.neighbours.insert(p(3));
        m.tick(241);
        drain(&mut m);
        m.on_routes(241, grown.clone());
        drain(&mut m);
        assert_eq!(dumps_between(&mut m, 242, 243, &grown), vec![242]);
    }

    /// A node keeps its peer cache filled in the background: about one
    /// address query every PROBE_EVERY seconds, to nodes it has a route
    /// to, never twice to the same node while its answer is fresh, never
    /// to its tunnels' peers; answers land in the cache as seen working.
    /// (Seen failing before background queries: no query at all.)
    #[test]
    fn a_settled_node_asks_known_nodes_for_their_addresses_in_the_background() {
        let mut m = with_tunnels_to_1_and_2(cfg(9, 2), PeerCache::new(100));
        let view = RoutingView {
            known: (1..=60).filter(|i| *i != 9).map(p).collect(),
            neighbours: direct([p(1), p(2)]),
            ..Default::default()
        };
        m.on_routes(0, view.clone());
        drain(&mut m);
        let mut asked = Vec::new();
        for t in 1..=1200 {
            m.tick(t);
            for a in drain(&mut m) {
                match a {
                    Action::QueryAddress(q) => {
                        asked.push((t, q));
                        // NATed nodes (multiples of 5) do not answer.
                        if q.value() % 5 != 0 {
                            m.on_address(q, &addr(q.value() as u32));
                        }
                    }
                    Action::RequestDump => m.on_routes(t, view.clone()),
                    _ => {}
                }
            }
            drain(&mut m);
        }
        let n = asked.len() as i64;
        assert!(
            (1200 / PROBE_EVERY * 2 / 3..=1200 / PROBE_EVERY * 3 / 2).contains(&n),
            "{n} queries in 20 minutes: {asked:?}"
        );
        assert!(asked.windows(2).all(|w| w[1].0 - w[0].0 >= PROBE_EVERY / 2));
        let peers: BTreeSet<Prefix> = asked.iter().map(|(_, q)| *q).collect();
        assert_eq!(peers.len(), asked.len(), "asked twice: {asked:?}");
        assert!(!peers.contains(&p(1)) && !peers.contains(&p(2)) && !peers.contains(&p(9)));
        let answered = peers.iter().filter(|q| q.value() % 5 != 0).count();
        assert_eq!(m.cache().len(), answered);
        assert!(peers
            .iter()
            .filter(|q| q.value() % 5 != 0)
            .all(|q| m.cache().last_seen(q).is_some()));
    }

    /// A node nobody connects to keeps two tunnels (its target): with
    /// both up, a fresher view changes nothing for it, so it dumps once a
    /// minute, like a full node, not every second after each change
    /// backing off to every 30 s. (Seen failing before: 23 dumps in 10
    /// minutes.)
    #[test]
    fn a_node_at_its_target_dumps_once_a_minute_while_nothing_changes() {
        let mut c = cfg(9, 10);
        // No refresh (and its drain) within the test.
        c.tunnel_refresh = 3600;
        let mut m = Manager::new(c, PeerCache::new(10), 0, 1);
        for i in [1, 2] {
            m.make_tunnel(p(i), &addr(i));
            m.on_tunnel_up(p(i), i.into());
        }
        drain(&mut m);
        let view = RoutingView {
            known: [p(0), p(1), p(2), p(3)].into(),
            neighbours: direct([p(1), p(2)]),
            ..Default::default()
        };
        m.on_routes(0, view.clone());
        drain(&mut m);
        assert_eq!((m.tunnels().count(), m.tunnel_target()), (2, 2));
        let dumps = dumps_between(&mut m, 1, 601, &view);
        assert!(dumps.len() <= 10, "{} dumps: {dumps:?}", dumps.len());
        // A neighbour gone, as babeld's monitor tells: a dump within
        // MONITOR_DUMP_GAP seconds.
        m.on_routing_changed();
        let soon = dumps_between(&mut m, 601, 601 + MONITOR_DUMP_GAP, &view);
        assert_eq!(soon.len(), 1, "{soon:?}");
    }

    /// babeld's monitor (a neighbour came or went, the registry's route
    /// changed) brings a dump to a full node too, at most every
    /// MONITOR_DUMP_GAP seconds. (Seen failing before: no dump until the
    /// view was 30 s old.)
    #[test]
    fn babels_monitor_brings_a_dump_to_a_full_node() {
        let mut m = with_tunnels_to_1_and_2(cfg(9, 2), PeerCache::new(10));
        let view = RoutingView {
            known: [p(0), p(1), p(2), p(7)].into(),
            neighbours: direct([p(1), p(2), p(7)]),
            ..Default::default()
        };
        m.on_routes(0, view.clone());
        drain(&mut m);
        assert!(dumps_between(&mut m, 1, 20, &view).is_empty());
        m.on_routing_changed();
        assert_eq!(dumps_between(&mut m, 20, 21, &view), vec![20]);
        m.on_routing_changed();
        let gap = dumps_between(&mut m, 21, 30, &view);
        assert_eq!(gap, vec![20 + MONITOR_DUMP_GAP], "{gap:?}");
    }

    /// Backing off does not delay a node cut from the registry: its dump
    /// comes as its bootstrap back-off ends, to try its cache again.
    #[test]
    fn a_node_cut_from_the_registry_dumps_when_its_bootstrap_back_off_ends() {
        let mut m = with_tunnels_to_1_and_2(cfg(9, 4), PeerCache::new(10));
        let view = RoutingView {
            known: [p(1), p(2), p(7)].into(),
            neighbours: direct([p(1), p(2), p(7)]),
            ..Default::default()
        };
        m.on_routes(0, view.clone());
        assert!(m.is_disconnected());
        drain(&mut m);
        // Long enough for the dumps to back off to their slowest.
        m.bootstrap_quiet_until = 97;
        let dumps = dumps_between(&mut m, 1, 98, &view);
        assert!(dumps.contains(&97), "{dumps:?}");
    }

    #[test]
    fn a_node_without_tunnels_checks_the_configuration_once_a_minute() {
        let mut cache = PeerCache::new(10);
        cache.add_peer(p(1), &addr(1), false, &mut || 1);
        let mut m = Manager::new(cfg(9, 1), cache, 0, 1);
        m.on_routes(0, RoutingView::default());
        let opened = drain(&mut m);
        assert!(opened.iter().any(|a| matches!(a, Action::Open { .. })));
        // A tunnel being tried is no tunnel: after 15 s, a check.
        assert_eq!(config_checks(&mut m, 1, 30), vec![16]);
        // Up: no more checks, however long.
        m.on_tunnel_up(p(1), 1);
        assert!(config_checks(&mut m, 30, 200).is_empty());
        // Served only: still in the network.
        m.on_tunnel_exit(p(1));
        m.on_served(p(2), true);
        assert!(config_checks(&mut m, 200, 300).is_empty());
        // Alone again: a check 15 s later, then one a minute.
        m.on_served(p(2), false);
        assert_eq!(config_checks(&mut m, 300, 460), vec![315, 375, 435]);
    }

    #[test]
    fn losing_every_tunnel_checks_the_configuration_15_s_later_despite_a_recent_check() {
        let mut cache = PeerCache::new(10);
        cache.add_peer(p(1), &addr(1), false, &mut || 1);
        let mut m = Manager::new(cfg(9, 1), cache, 0, 1);
        m.on_routes(0, RoutingView::default());
        drain(&mut m);
        // Alone while starting: a check.
        assert_eq!(config_checks(&mut m, 1, 20), vec![16]);
        // Connected, then every tunnel lost (a revocation whose news did
        // not reach us): 15 s later, not a minute after the first check.
        m.on_tunnel_up(p(1), 20);
        assert!(config_checks(&mut m, 20, 25).is_empty());
        m.on_tunnel_exit(p(1));
        assert_eq!(config_checks(&mut m, 25, 45), vec![40]);
    }

    #[test]
    fn a_neighbour_known_late_gets_a_tunnel_at_once_even_with_every_slot_taken() {
        let mut c = cfg(9, 2);
        c.neighbours = [p(4)].into();
        let mut cache = PeerCache::new(10);
        cache.add_peer(p(4), &addr(4), false, &mut || 1);
        let mut m = with_tunnels_to_1_and_2(c, cache);
        let opens = |a: &[Action], q: Prefix| {
            a.iter()
                .any(|a| matches!(a, Action::Open { prefix, .. } if *prefix == q))
        };
        // Both slots taken; 4 is not known yet: nothing to do, but babel
        // is asked again soon.
        let mut view = RoutingView {
            known: [p(0), p(1), p(2)].into(),
            neighbours: [p(1), p(2)].into(),
            ..Default::default()
        };
        m.on_routes(5, view.clone());
        assert!(!opens(&drain(&mut m), p(4)));
        m.tick(5 + NEIGHBOUR_POLL - 1);
        assert!(drain(&mut m).is_empty());
        m.tick(5 + NEIGHBOUR_POLL);
        assert_eq!(drain(&mut m), vec![Action::RequestDump]);
        // 4 shows up: its tunnel opens now, not after a drain.
        view.known.insert(p(4));
        m.on_routes(6, view.clone());
        assert!(opens(&drain(&mut m), p(4)));
        m.on_tunnel_up(p(4), 4);
        // The next refresh (a period after 4's tunnel opened) brings the
        // count back, never at 4's expense.
        view.routes_per_iface.insert("re6stnet3".into(), 0);
        view.routes_per_iface.insert("re6stnet1".into(), 3);
        view.routes_per_iface.insert("re6stnet2".into(), 5);
        m.on_routes(66, view.clone());
        let a = drain(&mut m);
        assert!(
            a.contains(&Action::Drain {
                iface: "re6stnet1".into(),
                drain: true
            }),
            "{a:?}"
        );
        // An unknown address is asked once per timeout, not at every dump.
        let mut c = cfg(9, 2);
        c.neighbours = [p(5)].into();
        let mut m = with_tunnels_to_1_and_2(c, PeerCache::new(10));
        view.known.insert(p(5));
        let queries = |a: Vec<Action>| {
            a.into_iter()
                .filter(|a| *a == Action::QueryAddress(p(5)))
                .count()
        };
        m.on_routes(1, view.clone());
        assert_eq!(queries(drain(&mut m)), 1);
        m.on_routes(2, view.clone());
        assert_eq!(queries(drain(&mut m)), 0);
        // Its answer opens the tunnel, slots full or not.
        m.on_address(p(5), &addr(5));
        assert!(opens(&drain(&mut m), p(5)));
    }

    #[test]
    fn a_neighbour_connected_to_our_server_still_gets_our_tunnel() {
        let mut c = cfg(9, 2);
        c.neighbours = [p(4)].into();
        let mut cache = PeerCache::new(10);
        cache.add_peer(p(4), &addr(4), false, &mut || 1);
        let mut m = Manager::new(c, cache, 0, 1);
        m.make_tunnel(p(1), &addr(1));
        m.on_tunnel_up(p(1), 1);
        m.on_served(p(4), true);
        drain(&mut m);
        // 4 reaches us through its client tunnel to our server (0 is the
        // registry's node, through 1).
        let view = RoutingView {
            known: [p(0), p(1), p(4)].into(),
            neighbours: [p(1), p(4)].into(),
            ..Default::default()
        };
        m.on_routes(10, view.clone());
        let a = drain(&mut m);
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Open { prefix, .. } if *prefix == p(4))),
            "{a:?}"
        );
        // Not so for a peer that is no --neighbour, nor on a LAN.
        let mut m = Manager::new(cfg(9, 2), PeerCache::new(10), 0, 1);
        m.on_served(p(4), true);
        m.on_routes(10, view.clone());
        assert!(!drain(&mut m).iter().any(|a| matches!(
            a,
            Action::Open { prefix, .. } | Action::QueryAddress(prefix) if *prefix == p(4)
        )));
        let mut c = cfg(9, 2);
        c.neighbours = [p(4)].into();
        let mut m = Manager::new(c, PeerCache::new(10), 0, 1);
        let lan = RoutingView {
            lan_neighbours: [p(4)].into(),
            ..view
        };
        m.on_routes(10, lan);
        assert!(!drain(&mut m).iter().any(|a| matches!(
            a,
            Action::Open { prefix, .. } | Action::QueryAddress(prefix) if *prefix == p(4)
        )));
    }

    #[test]
    fn routes_left_over_without_any_tunnel_are_not_trusted() {
        let mut cache = PeerCache::new(10);
        cache.add_peer(p(1), &addr(1), false, &mut || 1);
        let mut m = Manager::new(cfg(9, 2), cache, 0, 1);
        // babeld still routes to the registry's node and to 5 through a
        // peer that is gone: we have no tunnel, so they reach nobody.
        let stale = RoutingView {
            known: [p(0), p(5)].into(),
            neighbours: [p(5)].into(),
            ..Default::default()
        };
        m.on_routes(0, stale.clone());
        let a = drain(&mut m);
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Open { prefix, .. } if *prefix == p(1))),
            "{a:?}"
        );
        // With a LAN neighbour, babel's routes are real.
        let mut m = Manager::new(cfg(9, 2), PeerCache::new(10), 0, 1);
        let lan = RoutingView {
            lan_neighbours: [p(5)].into(),
            ..stale
        };
        m.on_routes(0, lan);
        assert!(m.routing().known.contains(&p(0)));
    }

    #[test]
    fn peers_that_refused_us_are_tried_again_with_a_new_certificate() {
        let mut cache = PeerCache::new(10);
        for i in 1..=3 {
            cache.add_peer(p(i), &addr(i), false, &mut || 1);
        }
        let mut m = Manager::new(cfg(9, 3), cache, 0, 1);
        m.on_routes(0, RoutingView::default());
        drain(&mut m);
        // Every address of every peer fails (our certificate is revoked).
        for _ in 0..2 {
            for i in 1..=3 {
                m.on_tunnel_exit(p(i));
            }
        }
        drain(&mut m);
        assert!((1..=3).all(|i| m.cache().address(&p(i)).is_none()));
        m.on_new_certificate();
        assert!((1..=3).all(|i| m.cache().address(&p(i)).is_some()));
        m.on_routes(1, RoutingView::default());
        let opened = drain(&mut m)
            .into_iter()
            .filter(|a| matches!(a, Action::Open { .. }))
            .count();
        assert_eq!(opened, 3);
    }

    #[test]
    fn a_new_certificate_reopens_each_tunnel_to_the_same_peer_on_the_same_tap() {
        let mut cache = PeerCache::new(10);
        for i in 1..=3 {
            cache.add_peer(p(i), &addr(i), false, &mut || 1);
        }
        let mut m = Manager::new(cfg(9, 3), cache, 0, 1);
        m.on_routes(0, RoutingView::default());
        let opened = |actions: Vec<Action>| -> BTreeMap<Prefix, (String, String)> {
            actions
                .into_iter()
                .filter_map(|a| match a {
                    Action::Open {
                        prefix,
                        iface,
                        address,
                    } => Some((prefix, (iface, address.to_string()))),
                    _ => None,
                })
                .collect()
        };
        let first = opened(drain(&mut m));
        assert_eq!(first.len(), 3);
        // Peers 1 and 2 answered on their second address (TCP); peer 3's
        // first attempt is still under way.
        for i in 1..=2 {
            m.on_tunnel_exit(p(i));
            m.on_tunnel_up(p(i), u64::from(i));
        }
        let tcp = opened(drain(&mut m));
        m.on_new_certificate();
        for i in 1..=3 {
            m.on_tunnel_exit(p(i));
        }
        let again = opened(drain(&mut m));
        assert_eq!(again[&p(1)], tcp[&p(1)]);
        assert_eq!(again[&p(2)], tcp[&p(2)]);
        assert_eq!(again[&p(3)], first[&p(3)]);
        assert!(m.tunnels().count() == 3);
        // Once: a later exit is a failure again (the next address).
        m.on_tunnel_up(p(1), 11);
        m.on_tunnel_exit(p(3));
        let next = opened(drain(&mut m));
        assert_eq!(next[&p(3)].0, first[&p(3)].0);
        assert!(next[&p(3)].1.ends_with("tcp"), "{next:?}");
    }

    #[test]
    fn tunnels_dropped_for_our_revoked_certificate_wait_for_the_new_one() {
        let mut cache = PeerCache::new(10);
        for i in 1..=4 {
            cache.add_peer(p(i), &addr(i), false, &mut || 1);
        }
        let mut m = Manager::new(cfg(9, 2), cache, 0, 1);
        m.on_routes(0, RoutingView::default());
        let opened = |actions: &[Action]| -> BTreeMap<Prefix, String> {
            actions
                .iter()
                .filter_map(|a| match a {
                    Action::Open { prefix, iface, .. } => Some((*prefix, iface.clone())),
                    _ => None,
                })
                .collect()
        };
        let first = opened(&drain(&mut m));
        assert_eq!(first.len(), 2);
        for (i, p) in first.keys().enumerate() {
            m.on_tunnel_up(*p, i as u64);
        }
        let (a, b) = {
            let mut k = first.keys();
            (*k.next().unwrap(), *k.next().unwrap())
        };
        // Our certificate is revoked; peer a drops us before the new one.
        m.on_own_revocation(10);
        m.on_tunnel_exit(a);
        m.tick(11);
        m.on_routes(11, RoutingView::default());
        let meanwhile = drain(&mut m);
        assert!(
            opened(&meanwhile).is_empty()
                && !meanwhile.iter().any(|x| matches!(x, Action::Close { .. })),
            "no other peer on a's tap, nothing closed: {meanwhile:?}"
        );
        assert_eq!(m.tunnels().count(), 2);
        // The new certificate: a opens again on its tap at once, b when
        // the shell's restart of its OpenVPN exits.
        m.on_new_certificate();
        assert_eq!(opened(&drain(&mut m)), [(a, first[&a].clone())].into());
        m.on_tunnel_exit(b);
        assert_eq!(opened(&drain(&mut m)), [(b, first[&b].clone())].into());

        // No new certificate within the tunnel timeout: given up, the
        // tunnel closes and its tap goes elsewhere as usual.
        m.on_tunnel_up(a, 20);
        m.on_tunnel_up(b, 21);
        m.on_own_revocation(100);
        m.on_tunnel_exit(a);
        m.tick(119);
        assert!(!drain(&mut m)
            .iter()
            .any(|x| matches!(x, Action::Close { .. })));
        m.tick(120);
        let closed: Vec<Prefix> = drain(&mut m)
            .into_iter()
            .filter_map(|x| match x {
                Action::Close { prefix, .. } => Some(prefix),
                _ => None,
            })
            .collect();
        assert_eq!(closed, [a]);
        // And without a revocation, an exit is a failure as before.
        m.on_tunnel_exit(b);
        assert!(drain(&mut m)
            .iter()
            .any(|x| matches!(x, Action::Close { prefix, .. } if *prefix == b)));
    }

    /// A toy network: every node runs a manager; "babel" is a BFS over the
    /// tunnel graph; tunnels come up instantly. The overlay must become
    /// connected and keep changing.
    #[test]
    fn toy_network_connects_and_rewires() {
        const N: u32 = 30;
        let mut nodes: Vec<Manager> = (0..N)
            .map(|i| {
                let mut cache = PeerCache::new(200);
                // Everybody knows the registry node (0) at start.
                if i != 0 {
                    cache.add_peer(p(0), &addr(0), false, &mut || 7);
                }
                let mut c = cfg(i, 3);
                c.tunnel_refresh = 30;
                Manager::new(c, cache, 0, u64::from(i) + 1)
            })
            .collect();
        let mut edges: BTreeSet<(u32, u32)> = BTreeSet::new();
        // Tunnels (as edges) being drained: expensive from both ends.
        let mut drained: BTreeSet<(u32, u32)> = BTreeSet::new();
        let mut history = Vec::new();
        for step in 0..200i64 {
            let now = step * 5;
            // Routing view of each node from the current graph.
            let adj = |a: u32| -> Vec<u32> {
                edges
                    .iter()
                    .filter_map(|&(x, y)| {
                        if x == a {
                            Some(y)
                        } else if y == a {
                            Some(x)
                        } else {
                            None
                        }
                    })
                    .collect()
            };
            for i in 0..N {
                let mut view = RoutingView::default();
                let mut via: Vec<(u32, BTreeSet<Prefix>)> = Vec::new();
                for n in adj(i) {
                    // Nodes reached through neighbour n: BFS not via i.
                    let mut seen: BTreeSet<u32> = [i, n].into();
                    let mut q = vec![n];
                    while let Some(x) = q.pop() {
                        for y in adj(x) {
                            if seen.insert(y) {
                                q.push(y);
                            }
                        }
                    }
                    seen.remove(&i);
                    via.push((n, seen.iter().map(|&x| p(x)).collect()));
                }
                for (n, set) in &via {
                    view.known.extend(set.iter().copied());
                    // Like babel: a drained link keeps only the routes
                    // that have no other way.
                    let routed: BTreeSet<Prefix> = if drained.contains(&(i.min(*n), i.max(*n))) {
                        set.iter()
                            .filter(|x| !via.iter().any(|(m, s)| m != n && s.contains(x)))
                            .copied()
                            .collect()
                    } else {
                        set.clone()
                    };
                    let iface = nodes[i as usize]
                        .tunnels()
                        .find(|(q, _)| **q == p(*n))
                        .map(|(_, f)| f.to_owned());
                    let f = iface.unwrap_or_else(|| "re6stnet-udp".into());
                    *view.routes_per_iface.entry(f.clone()).or_default() += routed.len();
                    *view.links.entry((f, p(*n))).or_default() += routed.len();
                    view.neighbours.insert(p(*n));
                }
                nodes[i as usize].tick(now);
                nodes[i as usize].on_routes(now, view);
            }
            // Carry out the actions.
            for i in 0..N {
                while let Some(a) = nodes[i as usize].poll_action() {
                    match a {
                        Action::Open { prefix, .. } => {
                            let j = prefix.value() as u32;
                            edges.insert((i.min(j), i.max(j)));
                            nodes[j as usize].on_served(p(i), true);
                            nodes[i as usize].on_tunnel_up(prefix, u64::from(j));
                        }
                        Action::Close { prefix, .. } => {
                            let j = prefix.value() as u32;
                            edges.remove(&(i.min(j), i.max(j)));
                            nodes[j as usize].on_served(p(i), false);
                        }
                        Action::QueryAddress(q) => {
                            let j = q.value() as u32;
                            nodes[i as usize].on_address(q, &addr(j));
                        }
                        Action::SendKill { prefix, code } => {
                            let j = prefix.value() as usize;
                            nodes[j].on_kill_message(now, p(i), code);
                        }
                        Action::RequestBootstrap => {
                            nodes[i as usize].on_bootstrap(Some((p(0), addr(0))))
                        }
                        Action::Drain { iface, drain } => {
                            let peer = nodes[i as usize]
                                .tunnels()
                                .find(|(_, f)| *f == iface)
                                .map(|(q, _)| q.value() as u32);
                            if let Some(j) = peer {
                                let edge = (i.min(j), i.max(j));
                                if drain {
                                    drained.insert(edge);
                                } else {
                                    drained.remove(&edge);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            history.push(edges.clone());
        }
        // Connected at the end.
        let mut seen: BTreeSet<u32> = [0].into();
        let mut q = vec![0u32];
        while let Some(x) = q.pop() {
            for &(a, b) in &edges {
                let y = if a == x {
                    b
                } else if b == x {
                    a
                } else {
                    continue;
                };
                if seen.insert(y) {
                    q.push(y);
                }
            }
        }
        assert_eq!(seen.len(), N as usize, "overlay not connected: {edges:?}");
        // And it changed over refresh cycles.
        let changed = history.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(changed > 20, "graph changed only {changed} times");
        for n in &nodes {
            assert!(n.tunnels().count() <= 3);
        }
    }

    /// A view in which `n` peers are babel neighbours, each routing
    /// itself, and the registry's node is known.
    fn view_of(n: u32) -> RoutingView {
        let mut v = RoutingView::default();
        for i in 1..=n {
            v.known.insert(p(i));
            v.neighbours.insert(p(i));
        }
        v.known.insert(p(0));
        v
    }

    proptest::proptest! {
        /// Ticking the manager only at `next_wake` and at events gives the
        /// same actions at the same seconds as ticking it every second, as
        /// the daemon does: what the simulator relies on at thousands of
        /// nodes.
        #[test]
        fn waking_at_next_wake_misses_no_tick(
            script in proptest::collection::vec((0u8..7, 1i64..90, 1u32..10), 1..40)
        ) {
            let make = || {
                let mut cache = PeerCache::new(50);
                for i in 1..=8 {
                    cache.add_peer(p(i), &addr(i), false, &mut || 1);
                }
                Manager::new(cfg(9, 4), cache, 0, 1)
            };
            let (mut every, mut lazy) = (make(), make());
            let (mut seen_every, mut seen_lazy) = (Vec::new(), Vec::new());
            let mut now = 0;
            for (kind, gap, peer) in script {
                let until = now + gap;
                for s in now + 1..=until {
                    every.tick(s);
                    seen_every.extend(drain(&mut every).into_iter().map(|a| (s, a)));
                }
                // Woken at `next_wake`, and at the event's second: events
                // read the clock of the last tick.
                let mut s = now;
                loop {
                    let wake = lazy.next_wake().max(s + 1).min(until);
                    lazy.tick(wake);
                    seen_lazy.extend(drain(&mut lazy).into_iter().map(|a| (wake, a)));
                    s = wake;
                    if wake == until {
                        break;
                    }
                }
                now = until;
                let event = |m: &mut Manager| match kind {
                    0 => m.on_routes(now, view_of(peer)),
                    1 => m.on_tunnel_up(p(peer), peer.into()),
                    2 => m.on_tunnel_exit(p(peer)),
                    3 => m.on_served(p(peer), true),
                    4 => m.on_served(p(peer), false),
                    5 => m.on_routes(now, RoutingView::default()),
                    _ => m.on_routing_changed(),
                };
                event(&mut every);
                event(&mut lazy);
                seen_every.extend(drain(&mut every).into_iter().map(|a| (now, a)));
                seen_lazy.extend(drain(&mut lazy).into_iter().map(|a| (now, a)));
                proptest::prop_assert_eq!(&seen_every, &seen_lazy);
            }
        }
    }
}
