//! babeld's life: one dump for the tunnel manager at a time, and a babeld
//! that exited restarted after a back-off that grows while it keeps
//! exiting (a timer of the core, never a sleep of the shell's loop).

use std::time::{Duration, Instant};

use super::{Effect, NodeCore, Now};
use crate::daemon::restart_backoff::RestartBackoff;
use crate::tunnel::manager::RoutingView;

#[derive(Debug)]
pub struct Babeld {
    backoff: RestartBackoff,
    /// When to start babeld again (it exited, or starting it failed).
    restart_at: Option<Instant>,
    /// A dump for the tunnel manager is under way.
    dumping: bool,
    /// Exits of babeld on its own, for the status.
    restarts: u64,
}

impl Babeld {
    pub fn new(now: &Now) -> Babeld {
        Babeld {
            backoff: RestartBackoff::new(now.mono as u64),
            restart_at: None,
            dumping: false,
            restarts: 0,
        }
    }

    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    pub fn restart_at(&self) -> Option<Instant> {
        self.restart_at
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
    }

    /// The tunnel manager wants babeld's routes: one dump at a time.
    pub(super) fn want_dump(&mut self) {
        if !std::mem::replace(&mut self.babeld.dumping, true) {
            self.effects.push_back(Effect::DumpBabel);
        }
    }

    pub(super) fn on_dump(&mut self, view: Option<RoutingView>, now: &Now) {
        self.babeld.dumping = false;
        if let Some(view) = view {
            self.manager.on_routes(now.mono, view);
        }
    }
}
