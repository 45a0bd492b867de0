//! What restarts: our OpenVPN servers when one exited (looked for at
//! every tick, but not within 10 s of a restart), when a revoked peer
//! could not be dropped alone, or when the network's limits changed;
//! babeld for new babel parameters; the whole node (re-executed) for a
//! new CA or for a change every tunnel depends on; the tunnels for a
//! renewed certificate.

use std::time::{Duration, Instant};

use re6st_proto::prefix::Prefix;

use super::{Effect, NodeCore, Now};
use crate::reconfig::Plan;

/// At most one restart of exited OpenVPN servers in this time.
pub const SERVER_RESTART_EVERY: Duration = Duration::from_secs(10);

/// What a renewal check brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewed {
    Nothing,
    /// A new certificate, saved: to use at once.
    Cert,
    /// A new CA, saved: the node starts over.
    Ca,
}

#[derive(Debug, Default)]
pub struct Servers {
    /// When our servers were last restarted (none since the node
    /// started: an exit is acted on at once).
    restarted: Option<Instant>,
    /// A revoked peer could not be dropped alone: restart at the next tick.
    restart_wanted: bool,
    /// A restart was asked of the shell and not yet done.
    restarting: bool,
    /// OpenVPN processes that exited on their own, for the status.
    exits: u64,
}

impl Servers {
    pub fn exits(&self) -> u64 {
        self.exits
    }
}

impl NodeCore {
    /// At the tick: a restart asked since, or a look at whether a server
    /// exited (not within [`SERVER_RESTART_EVERY`] of a restart: a server
    /// that cannot start is not restarted every second).
    pub(super) fn servers_tick(&mut self, now: &Now) {
        if std::mem::take(&mut self.servers.restart_wanted) {
            self.restart_servers();
        }
        if self
            .servers
            .restarted
            .is_none_or(|at| now.at.saturating_duration_since(at) >= SERVER_RESTART_EVERY)
        {
            self.effects.push_back(Effect::CheckServers);
        }
    }

    pub(super) fn on_server_exited(&mut self, iface: String, status: String) {
        self.log(1, format!("OpenVPN server {iface} exited ({status})"));
        self.servers.exits += 1;
        self.restart_servers();
    }

    pub(super) fn on_tunnel_exited(&mut self, prefix: Prefix) {
        self.servers.exits += 1;
        self.manager.on_tunnel_exit(prefix);
        self.check_kernel_soon();
    }

    pub(super) fn on_drop_failed(&mut self, why: String) {
        // Without its management socket, a server drops a revoked peer
        // only by restarting (every other client with it).
        self.log(
            1,
            format!("could not drop a revoked peer: {why}; restarting the OpenVPN servers"),
        );
        self.servers.restart_wanted = true;
    }

    /// Asks the shell to restart the servers, once however many reasons.
    fn restart_servers(&mut self) {
        if !std::mem::replace(&mut self.servers.restarting, true) {
            self.effects.push_back(Effect::RestartServers);
        }
    }

    pub(super) fn servers_restarted(&mut self, now: &Now) {
        self.servers.restarting = false;
        self.servers.restarted = Some(now.at);
        self.on_servers_restarted();
    }

    /// A newer network configuration is in use: what restarts.
    pub(super) fn on_new_config(&mut self, plan: Plan, now: &Now) {
        if plan.too_old {
            self.log(
                0,
                "our protocol is older than the network's minimum: upgrade re6st",
            );
        }
        if plan.reexec {
            self.log(1, "network configuration changed: restarting the node");
            self.effects.push_back(Effect::Reexec);
            return;
        }
        if plan.renew {
            self.own_cert_revoked(now);
        }
        if plan.restart_babel {
            self.log(1, "network configuration changed: restarting babeld");
            self.effects.push_back(Effect::RestartBabeld);
        }
        if !plan.drop_served.is_empty() {
            self.effects.push_back(Effect::DropServed(plan.drop_served));
        }
        if plan.restart_servers {
            self.restart_servers();
        }
    }

    pub(super) fn on_renewed(&mut self, renewed: Renewed) {
        match renewed {
            Renewed::Ca => {
                self.log(1, "new CA: restarting the node");
                self.effects.push_back(Effect::Reexec);
            }
            Renewed::Cert => {
                // Babel and the taps stay: peers keep seeing the same
                // neighbours, only the tunnels restart.
                self.log(1, "new certificate: reconnecting the tunnels with it");
                self.effects.push_back(Effect::UseNewCert);
                self.restart_servers();
            }
            Renewed::Nothing => {}
        }
    }
}
