//! babeld's life: one dump for the tunnel manager at a time, and a babeld
//! that exited restarted after a back-off that grows while it keeps
//! exiting (a timer of the core, never a sleep of the shell's loop).
//!
//! And a new tunnel's routes at once. babeld asks a new neighbour for its
//! routes only when the interface comes up, in its first packet, which
//! the neighbour drops when the network signs its packets (HMAC: a packet
//! from an unknown neighbour, or with an unknown index, only starts a
//! challenge). The routes then came with the neighbour's next periodic
//! full update, 4 hellos later (16 s at a 4 s hello: most of a node's
//! join time, see docs/join-timeline.md). The same happens whenever
//! babeld takes an interface back (its tap lost its carrier, e.g. our
//! servers restarted) or restarts: its neighbours challenge its new
//! index. Stock babeld
//! also asks for full tables, and sends its own, when an interface's IPv4
//! address changes: once a neighbour is usable (both ends past the
//! challenge) on a tap where a tunnel started or babeld lost its
//! neighbours, the node changes that tap's link-local IPv4 address. The
//! address is not used for anything else (the network carries no IPv4
//! then). Not when a drain starts: its routes are to move away.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::{Effect, NodeCore, Now};

/// A dump that failed soon after babeld started (its control socket is
/// not there yet) is tried again this much later, rather than on the next
/// 1 s tick: the first tunnel waits for the first dump.
const EARLY_REDUMP: Duration = Duration::from_millis(200);
/// How many failed dumps after a start are tried again that early (4 s
/// worth; babeld opens its socket within ~0.1 s of starting).
const EARLY_REDUMPS: u8 = 20;

/// Dumps in a row that babeld did not answer, once it answered one, that
/// restart it. Stock babeld 1.12 with HMAC stops serving its sockets
/// while it cannot sign a message buffered for a neighbour on a tap that
/// went down: its main loop skips `select` while that message is
/// overdue, so it neither answers nor reads babel packets nor hears the
/// kernel say the tap is back, until its next periodic interface check
/// or the neighbour's expiry (10 to 13 s seen after a renewal, at 100 %
/// CPU). The node asks for a dump every second or more often while
/// tunnels change.
const STUCK_AFTER: u8 = 3;

/// At most one such restart per this long (a babeld slow for another
/// reason is not restarted in a loop).
const STUCK_RESTART_GAP: Duration = Duration::from_secs(60);

/// How long the copies of a given-up drain's routes stay after the table
/// exchange that brings babeld's back (the neighbour answers at once;
/// babeld installs what it hears within its next update flush).
const HOLD_AFTER_EXCHANGE: Duration = Duration::from_secs(3);

/// The two addresses a client tap alternates between for a table
/// exchange (link-local, /32: no route, no subnet).
pub const EXCHANGE_ADDRESSES: [Ipv4Addr; 2] = [
    Ipv4Addr::new(169, 254, 36, 1),
    Ipv4Addr::new(169, 254, 36, 2),
];

/// A tap's table exchanges.
#[derive(Debug, Default)]
struct Exchanges {
    /// A tunnel started on the tap, or babeld lost its neighbours there,
    /// and no exchange followed yet.
    armed: bool,
    /// The address the tap has (index in [`EXCHANGE_ADDRESSES`]).
    address: Option<usize>,
}
use crate::restart_backoff::RestartBackoff;
use crate::tunnel::RoutingView;

#[derive(Debug)]
pub struct Babeld {
    backoff: RestartBackoff,
    /// When to start babeld again (it exited, or starting it failed).
    restart_at: Option<Instant>,
    /// A dump for the tunnel manager is under way.
    dumping: bool,
    /// Exits of babeld on its own, for the status.
    restarts: u64,
    /// When to dump again after an early failed dump.
    redump_at: Option<Instant>,
    /// Early failed dumps still to be tried again at once.
    early_redumps: u8,
    /// Dumps in a row not answered since the last answered one.
    unanswered: u8,
    /// When babeld was last restarted for not answering.
    stuck_restart: Option<Instant>,
    /// Per tap (the shell's list: our servers' and the client count's).
    exchanges: BTreeMap<String, Exchanges>,
    /// Taps of a drain given up, whose copies of the routes (see
    /// `daemon::handover`) stay until babeld has the tunnel's routes
    /// again: when to drop them (`None`: the exchange has not happened).
    held: BTreeMap<String, Option<Instant>>,
}

impl Babeld {
    pub fn new(now: &Now) -> Babeld {
        Babeld {
            backoff: RestartBackoff::new(now.mono as u64),
            restart_at: None,
            dumping: false,
            restarts: 0,
            redump_at: None,
            early_redumps: EARLY_REDUMPS,
            unanswered: 0,
            stuck_restart: None,
            exchanges: BTreeMap::new(),
            held: BTreeMap::new(),
        }
    }

    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The earliest of babeld's own timers.
    pub fn next_timer(&self) -> Option<Instant> {
        [self.restart_at, self.redump_at]
            .into_iter()
            .chain(self.held.values().copied())
            .flatten()
            .min()
    }
}

impl NodeCore {
    pub(super) fn on_babeld_exited(&mut self, status: String, now: &Now) {
        let delay = self.babeld.backoff.on_exit(now.mono as u64);
        self.log(
            1,
            format!("babeld exited ({status}); restarting in {delay}s"),
        );
        self.babeld.restart_at = Some(now.at + Duration::from_secs(delay));
    }

    /// babeld was started: after its back-off (`restarted`), or anew for a
    /// new configuration.
    pub(super) fn on_babeld_started(&mut self, restarted: bool, now: &Now) {
        self.babeld.backoff.on_start(now.mono as u64);
        self.babeld.early_redumps = EARLY_REDUMPS;
        self.babeld.unanswered = 0;
        // Every neighbour challenges the new babeld: exchange everywhere.
        for x in self.babeld.exchanges.values_mut() {
            x.armed = true;
        }
        if restarted {
            self.babeld.restarts += 1;
            self.log(1, "babeld restarted");
        }
    }

    pub(super) fn on_babeld_start_failed(&mut self, error: String, now: &Now) {
        let delay = self.babeld.backoff.on_start_failed(now.mono as u64);
        self.log(0, format!("babeld: {error}; trying again in {delay}s"));
        self.babeld.restart_at = Some(now.at + Duration::from_secs(delay));
    }

    /// babeld's restart time came.
    pub(super) fn babeld_timer(&mut self, now: &Now) {
        if self.babeld.restart_at.is_some_and(|t| now.at >= t) {
            self.babeld.restart_at = None;
            self.effects.push_back(Effect::StartBabeld);
        }
        if self.babeld.redump_at.is_some_and(|t| now.at >= t) {
            self.babeld.redump_at = None;
            self.want_dump();
        }
        let due: Vec<String> = self
            .babeld
            .held
            .iter()
            .filter(|(_, t)| t.is_some_and(|t| now.at >= t))
            .map(|(iface, _)| iface.clone())
            .collect();
        for iface in due {
            self.babeld.held.remove(&iface);
            self.effects
                .push_back(Effect::HoldRoutes { iface, hold: false });
        }
    }

    /// A drain given up on `iface`: babel speaks there again, but the
    /// silence cost it the routes that had nowhere else to go. They come
    /// back with a table exchange once the neighbour is usable again (a
    /// few seconds; without it, at the neighbour's next full update, up
    /// to 4 hellos later), and the copies made for the drain carry the
    /// traffic until then: a drain fails precisely when some routes had
    /// nowhere else to go.
    /// Without table exchanges (an IPv4 payload), the copies go at once.
    pub(super) fn drain_undone(&mut self, iface: &str) {
        if self.babeld.exchanges.contains_key(iface) {
            self.arm_exchange(iface);
            self.babeld.held.insert(iface.to_owned(), None);
        } else {
            self.release_held(iface);
        }
    }

    /// A new drain on `iface` takes copies of its own: those of an earlier
    /// drain given up are no longer on a timer.
    pub(super) fn drain_started(&mut self, iface: &str) {
        self.babeld.held.remove(iface);
    }

    /// The copies on `iface` go now (its tunnel closed, or a new drain
    /// takes them again).
    pub(super) fn release_held(&mut self, iface: &str) {
        self.babeld.held.remove(iface);
        self.effects.push_back(Effect::HoldRoutes {
            iface: iface.to_owned(),
            hold: false,
        });
    }

    pub(super) fn set_exchange_taps(&mut self, taps: Vec<String>) {
        self.babeld.exchanges = taps
            .into_iter()
            .map(|t| (t, Exchanges::default()))
            .collect();
    }

    /// A tunnel starts on `iface`, or babeld took it back: its next usable
    /// neighbour is worth an exchange.
    pub(super) fn arm_exchange(&mut self, iface: &str) {
        if let Some(x) = self.babeld.exchanges.get_mut(iface) {
            x.armed = true;
        }
    }

    /// A neighbour on `iface` became usable: on an armed tap, babeld
    /// exchanges full tables with its neighbours there at once (see the
    /// module's text). Once per arming: arming comes from events that
    /// are themselves bounded (a tunnel started, an interface taken back,
    /// babeld started).
    pub(super) fn on_neighbour_usable(&mut self, iface: String, now: &Now) {
        let Some(x) = self.babeld.exchanges.get_mut(&iface) else {
            return;
        };
        if !std::mem::take(&mut x.armed) {
            return;
        }
        if let Some(t @ None) = self.babeld.held.get_mut(&iface) {
            *t = Some(now.at + HOLD_AFTER_EXCHANGE);
        }
        let next = x.address.map_or(0, |i| 1 - i);
        let remove = x.address.map(|i| EXCHANGE_ADDRESSES[i]);
        x.address = Some(next);
        self.effects.push_back(Effect::ExchangeTables {
            iface,
            remove,
            add: EXCHANGE_ADDRESSES[next],
        });
    }

    /// The tunnel manager wants babeld's routes: one dump at a time.
    pub(super) fn want_dump(&mut self) {
        if !std::mem::replace(&mut self.babeld.dumping, true) {
            self.effects.push_back(Effect::DumpBabel);
        }
    }

    pub(super) fn on_dump(&mut self, view: Option<RoutingView>, now: &Now) {
        self.babeld.dumping = false;
        match view {
            Some(view) => {
                self.babeld.early_redumps = 0;
                self.babeld.unanswered = 0;
                self.babeld.redump_at = None;
                self.manager.on_routes(now.mono, view);
            }
            None if self.babeld.early_redumps > 0 => {
                self.babeld.early_redumps -= 1;
                self.babeld.redump_at = Some(now.at + EARLY_REDUMP);
            }
            // Said: the tunnel manager decides nothing until a dump comes.
            None => {
                self.log(2, "babeld did not answer a dump");
                let b = &mut self.babeld;
                b.unanswered = b.unanswered.saturating_add(1);
                if b.unanswered >= STUCK_AFTER
                    && b.stuck_restart
                        .is_none_or(|t| now.at >= t + STUCK_RESTART_GAP)
                {
                    b.unanswered = 0;
                    b.stuck_restart = Some(now.at);
                    self.log(
                        1,
                        format!(
                            "babeld answered none of {STUCK_AFTER} dumps in a row: restarting it"
                        ),
                    );
                    self.effects.push_back(Effect::RestartBabeld);
                }
            }
        }
    }
}
