//! What the tunnel manager's decisions mean for babeld and OpenVPN: a
//! tunnel opened on a tap babeld does not know yet adds the tap to
//! babeld; babel is silenced on a tunnel being drained (its routes held
//! in the kernel) and speaks again when the drain ends; kill messages and
//! address queries go to the peer. babeld's interfaces are never
//! re-created (`flush interface`): see `daemon::handover` for why.

use std::collections::BTreeSet;

use re6st_proto::message::Code;
use re6st_proto::prefix::Prefix;

use super::{Effect, NodeCore};
use crate::tunnel::Action;

/// The interfaces babeld was told about and its default interface
/// parameters.
#[derive(Debug, Default)]
pub struct BabelIfaces {
    /// Its command line's, then the taps taken into use later: a restarted
    /// babeld gets them all. Only our own interfaces (bounded by the
    /// client count and the servers).
    known: BTreeSet<String>,
    defaults: String,
}

impl BabelIfaces {
    pub fn known(&self) -> &BTreeSet<String> {
        &self.known
    }
}

impl NodeCore {
    pub(super) fn set_babel_interfaces(&mut self, interfaces: Vec<String>) {
        self.babel.known = interfaces.into_iter().collect();
    }

    pub(super) fn set_babel_defaults(&mut self, defaults: String) {
        self.babel.defaults = defaults;
    }

    /// One of the tunnel manager's actions (but its requests for dumps,
    /// bootstrap peers and configuration checks, see `poll_effect`).
    pub(super) fn on_action(&mut self, action: Action) {
        match action {
            Action::Open {
                prefix,
                iface,
                address,
            } => {
                self.log(
                    2,
                    format!(
                        "tunnel to {} via {iface}: trying {address}",
                        prefix.to_subnet()
                    ),
                );
                if self.babel.known.insert(iface.clone()) {
                    let line = format!("interface {iface} {}", self.babel.defaults);
                    self.effects.push_back(Effect::TellBabel(vec![line]));
                }
                self.arm_exchange(&iface);
                self.effects.push_back(Effect::StartTunnel {
                    prefix,
                    iface,
                    address,
                });
            }
            Action::Close { prefix, iface } => {
                self.log(
                    2,
                    format!("tunnel to {} via {iface}: closed", prefix.to_subnet()),
                );
                self.effects.push_back(Effect::StopTunnel { prefix, iface });
                self.check_kernel_soon();
            }
            Action::QueryAddress(prefix) => self.send_to_peer(prefix, &[Code::Address as u8]),
            Action::SendKill { prefix, code } => {
                let what = if code == 2 {
                    "asking to close"
                } else {
                    "agreeing to close"
                };
                self.log(2, format!("tunnel with {}: {what}", prefix.to_subnet()));
                self.send_to_peer(prefix, &[code]);
            }
            Action::Drain { iface, drain: true } => {
                self.log(2, format!("draining {iface}"));
                self.drain_started(&iface);
                self.effects.push_back(Effect::HoldRoutes {
                    iface: iface.clone(),
                    hold: true,
                });
                self.effects
                    .push_back(Effect::MuteBabel { iface, mute: true });
            }
            Action::Drain {
                iface,
                drain: false,
            } => {
                if self.manager.tunnels().any(|(_, i)| i == iface) {
                    // The tunnel stays: a drain given up.
                    self.log(2, format!("{iface}: drain given up"));
                    self.drain_undone(&iface);
                } else {
                    self.release_held(&iface);
                }
                self.effects
                    .push_back(Effect::MuteBabel { iface, mute: false });
            }
            Action::RequestDump => self.want_dump(),
            Action::RequestBootstrap => self.want_bootstrap(),
            Action::CheckConfig => self.config_check_asked(),
        }
    }

    pub(super) fn on_tunnel_start_failed(&mut self, prefix: Prefix, error: String) {
        self.log(1, format!("openvpn: {error}"));
        self.manager.on_tunnel_exit(prefix);
    }
}
