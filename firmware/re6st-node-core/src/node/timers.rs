//! The node's periodic work: our network version sent to our neighbours
//! every 30 s (a neighbour whose tunnel was restarting missed the last
//! one), babeld's routes compared with the kernel's every 10 s, every 2 s
//! for 20 s after a tunnel or a neighbour went away (one comparison at a
//! time), the peer cache saved every minute (a failure
//! logged, and the first success after failures), and every minute the
//! peer-protocol sessions idle for 10 minutes dropped, but those with our
//! neighbours and the registry's node.

use super::{Effect, NodeCore, Now};

/// Seconds between two announcements of our network version.
const ANNOUNCE_EVERY: i64 = 30;
/// Seconds between two comparisons of babeld's routes with the kernel's.
const KERNEL_CHECK_EVERY: i64 = 10;
/// The same, for [`KERNEL_CHECK_SOON_FOR`] seconds after a tunnel closed,
/// a peer left our server or babeld's neighbours changed: that is when
/// babeld moves routes to another neighbour, maybe on the same tap, and
/// stock babeld takes the kernel's "exists" for success while the kernel
/// keeps the old route (a fix needs two comparisons that agree).
const KERNEL_CHECK_SOON: i64 = 2;
const KERNEL_CHECK_SOON_FOR: i64 = 20;
/// The peer cache is saved when it was last saved more than this long ago
/// (seconds).
const SAVE_AFTER: i64 = 60;
/// Seconds between two looks for idle peer-protocol sessions.
const PRUNE_EVERY: i64 = 60;

#[derive(Debug)]
pub struct Timers {
    version_announced: i64,
    kernel_checked: i64,
    kernel_checking: bool,
    /// Comparisons come every [`KERNEL_CHECK_SOON`] until then.
    kernel_soon_until: i64,
    /// Something happened after which babeld moves routes: at the next
    /// tick, comparisons come sooner.
    kernel_soon: bool,
    cache_saved: i64,
    cache_save_failed: bool,
    sessions_pruned: i64,
}

impl Timers {
    pub fn new(now: &Now) -> Timers {
        Timers {
            version_announced: now.mono,
            // The first tick compares at once.
            kernel_checked: 0,
            kernel_checking: false,
            kernel_soon_until: 0,
            kernel_soon: false,
            cache_saved: now.mono,
            cache_save_failed: false,
            sessions_pruned: now.mono,
        }
    }
}

impl NodeCore {
    pub(super) fn periodic_tick(&mut self, now: &Now) {
        let t = &mut self.timers;
        if now.mono - t.version_announced >= ANNOUNCE_EVERY {
            self.announce_version(now);
        }
        if now.mono - self.timers.sessions_pruned >= PRUNE_EVERY {
            self.timers.sessions_pruned = now.mono;
            let mut keep = self.neighbours();
            keep.extend(self.registry_node);
            self.link.prune_idle(now.wall, |p| keep.contains(p));
        }
        let t = &mut self.timers;
        if std::mem::take(&mut t.kernel_soon) {
            t.kernel_soon_until = now.mono + KERNEL_CHECK_SOON_FOR;
        }
        let every = if now.mono < t.kernel_soon_until {
            KERNEL_CHECK_SOON
        } else {
            KERNEL_CHECK_EVERY
        };
        if now.mono - t.kernel_checked >= every {
            t.kernel_checked = now.mono;
            if !std::mem::replace(&mut t.kernel_checking, true) {
                self.effects.push_back(Effect::CompareKernelRoutes);
            }
        }
    }

    /// After the tunnel manager's tick: the cache it keeps is saved.
    pub(super) fn save_tick(&mut self, now: &Now) {
        if now.mono - self.timers.cache_saved > SAVE_AFTER {
            self.timers.cache_saved = now.mono;
            self.effects.push_back(Effect::SaveCache);
        }
    }

    pub(super) fn version_announced(&mut self, now: &Now) {
        self.timers.version_announced = now.mono;
    }

    /// A tunnel closed, a peer left our server or babeld's neighbours
    /// changed: babeld is about to move routes (see [`KERNEL_CHECK_SOON`]).
    pub(super) fn check_kernel_soon(&mut self) {
        self.timers.kernel_soon = true;
    }

    pub(super) fn kernel_routes_compared(&mut self) {
        self.timers.kernel_checking = false;
    }

    pub(super) fn on_cache_saved(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                if std::mem::take(&mut self.timers.cache_save_failed) {
                    self.log(1, "peer cache saved again");
                }
            }
            Err(e) => {
                self.log(
                    1,
                    format!("cannot save the state: {e} (the previous file is kept)"),
                );
                self.timers.cache_save_failed = true;
            }
        }
    }
}
