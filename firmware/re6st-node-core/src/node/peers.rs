//! What the peer protocol's messages mean for the node: a peer's address
//! and its kill messages go to the tunnel manager; a peer's network
//! version newer than ours makes us fetch the configuration, an older one
//! gets ours back; the registry's node (only it, as upstream) gets our
//! tunnels when it asks; relay datagrams from a socket we do not trust are
//! counted and said at powers of two.

use std::net::SocketAddr;

use re6st_proto::prefix::Prefix;

use super::{NodeCore, Now};

impl NodeCore {
    /// A peer's network version (`None`: its signature did not verify).
    pub(super) fn on_peer_version(
        &mut self,
        peer: Prefix,
        theirs: Option<u64>,
        ours: u64,
        now: &Now,
    ) {
        let Some(theirs) = theirs else {
            self.log(2, format!("bad network version from {}", peer.to_subnet()));
            return;
        };
        self.log(
            3,
            format!(
                "network version {theirs} from {} (ours {ours})",
                peer.to_subnet()
            ),
        );
        if theirs < ours {
            let msg = super::link::version_message(&self.link.version);
            self.send_to_peer(peer, &msg);
        } else if theirs > ours {
            self.newer_config_seen(now);
        }
    }

    /// A peer asked for our tunnels, `first` the request's first byte.
    pub(super) fn on_topology_asked(&mut self, peer: Prefix, first: u8) {
        if Some(peer) == self.registry_node {
            let payload = [&[first][..], self.topology().as_bytes()].concat();
            self.send_to_peer(peer, &payload);
        }
    }

    pub(super) fn on_relay_refused(&mut self, from: SocketAddr) {
        self.relay_refused = self.relay_refused.saturating_add(1);
        if self.relay_refused.is_power_of_two() {
            self.log(
                1,
                format!(
                    "relay datagram from {from} ignored: not from root's or our user's \
                     socket ({} so far)",
                    self.relay_refused
                ),
            );
        }
    }

    /// Our answer to `topology`: the number of our client tunnels, then
    /// their peers and those we serve (`N p1 p2...`, as upstream).
    pub fn topology(&self) -> String {
        let tunnels: Vec<String> = self.manager.tunnels().map(|(p, _)| p.to_subnet()).collect();
        let served = self.manager.served().iter().map(|p| p.to_subnet());
        let mut text = tunnels.len().to_string();
        for s in tunnels.iter().cloned().chain(served) {
            text += " ";
            text += &s;
        }
        text
    }
}
