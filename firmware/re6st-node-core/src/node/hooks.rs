//! What OpenVPN's hooks mean: a peer connecting to one of our servers is
//! accepted unless its certificate is revoked; the serials and connections
//! of the peers on our servers are remembered (bounded) so that a CRL
//! naming one of them drops that connection alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use re6st_proto::prefix::Prefix;

use super::{Effect, NodeCore};
use crate::connections::Connections;
use crate::hook_event::Event;

/// Serials of the peers on our servers, at most (OpenVPN's --max-clients
/// bounds the real ones; hook events beyond are not remembered: the CRL
/// check then does not restart the servers for them).
pub const MAX_SERVED_SERIALS: usize = 1024;

/// The peers on our servers, as the hooks report them.
#[derive(Debug, Default)]
pub struct Served {
    /// Each served peer's certificate serial.
    serials: BTreeMap<Prefix, u64>,
    /// The connections on our servers and their certificates.
    links: Connections,
}

impl Served {
    pub fn serials(&self) -> BTreeSet<u64> {
        self.serials.values().copied().collect()
    }

    pub fn serial_count(&self) -> usize {
        self.serials.len()
    }

    pub fn links(&self) -> &Connections {
        &self.links
    }

    fn clear(&mut self) {
        self.serials.clear();
        self.links.clear();
    }
}

impl NodeCore {
    pub(super) fn on_hook(&mut self, event: Event, reply_to: Option<PathBuf>) {
        match event {
            Event::ClientConnect(p) => {
                let accept = !self.config.crl.contains(&p.serial);
                if let Some(to) = reply_to {
                    self.effects.push_back(Effect::AnswerHook { to, accept });
                }
                if let (true, Ok(prefix)) = (accept, Prefix::from_subnet(&p.cn)) {
                    self.manager.on_served(prefix, true);
                    let served = &mut self.served.serials;
                    if served.len() < MAX_SERVED_SERIALS || served.contains_key(&prefix) {
                        served.insert(prefix, p.serial);
                    }
                    self.served.links.connected(&p.dev, &p.ip, p.port, p.serial);
                }
            }
            Event::ClientDisconnect(p) => {
                self.served.links.disconnected(&p.dev, &p.ip, p.port);
                if let Ok(prefix) = Prefix::from_subnet(&p.cn) {
                    self.manager.on_served(prefix, false);
                    // Else a later CRL naming its serial would restart our
                    // servers for a peer long gone.
                    self.served.serials.remove(&prefix);
                }
                self.check_kernel_soon();
            }
            Event::RouteUp {
                cn,
                serial,
                external_ip,
            } => {
                if let Ok(prefix) = Prefix::from_subnet(&cn) {
                    self.manager.on_tunnel_up(prefix, serial);
                }
                self.effects.push_back(Effect::PeerSawUs(external_ip));
            }
        }
    }

    /// Our servers restarted: nobody is connected to them any more.
    pub(super) fn on_servers_restarted(&mut self) {
        self.served.clear();
        self.manager.clear_served();
        self.check_kernel_soon();
    }
}
