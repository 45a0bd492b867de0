//! The UDP peer protocol as the node uses it: datagrams from peers go
//! through the [`PeerLink`]'s sessions and what they mean goes to the
//! tunnel manager ([`peers`](super::peers) decides about versions and
//! topology); the registry's relay (local datagrams the shell let through)
//! is answered for our own prefix and forwarded to peers otherwise, their
//! answers going back to it; messages to peers leave as datagrams.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use re6st_proto::message::{Code, Message, FORWARD};
use re6st_proto::peer::Identity;
use re6st_proto::prefix::Prefix;
use re6st_proto::relay;

use super::{Effect, NodeCore, Now};
use crate::peer_link::{PeerEvent, PeerLink};

impl NodeCore {
    /// A datagram from a peer (not from a local socket).
    pub(super) fn on_datagram(&mut self, from: SocketAddr, data: &[u8], now: &Now) {
        let (out, event) = self.link.receive(from, data, now.wall_us);
        self.send_datagrams(out);
        if let Some(event) = event {
            self.on_peer_event(event, now);
        }
    }

    /// A session's decrypted payload from `prefix`, as
    /// [`Input::Datagram`](super::Input::Datagram) would give it once its
    /// session checked it. `pub` for the fuzz target `node_core`, which has
    /// no session to encrypt its payloads.
    pub fn session_message(&mut self, from: SocketAddr, prefix: Prefix, payload: &[u8], now: Now) {
        let (out, event) = self.link.message(from, prefix, payload, now.wall);
        self.send_datagrams(out);
        if let Some(event) = event {
            self.on_peer_event(event, &now);
        }
    }

    fn on_peer_event(&mut self, event: PeerEvent, now: &Now) {
        match event {
            // Answers to requests the registry relayed through us.
            PeerEvent::Forward(p, code, data) => {
                if let Some(to) = self.forward_to {
                    let data = relay::encode(&p, code, &data);
                    self.effects.push_back(Effect::SendDatagram { to, data });
                }
            }
            PeerEvent::Address(p, a) => self.manager.on_address(p, &a),
            PeerEvent::Kill(p, code) => self.manager.on_kill_message(now.mono, p, code),
            PeerEvent::Version(peer, blob) => {
                if blob != self.link.version {
                    let theirs = re6st_proto::crypto::verify_version(&self.link.me.ca, &blob).ok();
                    let ours = self.version_number();
                    self.on_peer_version(peer, theirs, ours, now);
                }
            }
            // Only for the registry's node, as upstream: the registry
            // explores the tunnel graph through it.
            PeerEvent::Topology(peer, first) => self.on_topology_asked(peer, first),
        }
    }

    /// A datagram of the registry's relay (the shell checked that the
    /// registry sent it): a request for us is answered here, one for
    /// another node forwarded to it, its answer coming back later
    /// ([`PeerEvent::Forward`]).
    pub(super) fn on_relay(&mut self, from: SocketAddr, data: &[u8], now: &Now) {
        let Ok(r) = relay::decode(data) else {
            return;
        };
        self.forward_to = Some(from);
        if r.prefix != self.link.me.prefix {
            let payload = [&[r.code | FORWARD][..], r.payload].concat();
            self.send_to_peer(r.prefix, &payload);
            return;
        }
        let payload = [&[r.code][..], r.payload].concat();
        let Ok(m) = Message::decode(&payload) else {
            return;
        };
        let (answer, _) = self.link.answer(false, &m);
        if m.code == Code::Version {
            // The registry has a new network configuration.
            self.newer_config_seen(now);
        }
        let answer = match answer {
            Some(a) => a,
            None if m.code == Code::Topology => self.topology().into_bytes(),
            None => return,
        };
        let data = relay::encode(&r.prefix, r.code, &answer);
        self.effects
            .push_back(Effect::SendDatagram { to: from, data });
    }

    /// Sends `payload` to a peer: over its session, or a hello0 first (the
    /// message waits for the session, see [`PeerLink::send`]).
    pub(super) fn send_to_peer(&mut self, prefix: Prefix, payload: &[u8]) {
        let out = self.link.send(prefix, payload, self.wall_us);
        self.send_datagrams(out);
    }

    /// Our network version to every peer we have a tunnel with (they pass
    /// it on to theirs).
    pub(super) fn announce_version(&mut self, now: &Now) {
        self.version_announced(now);
        let msg = version_message(&self.link.version);
        for p in self.neighbours() {
            self.send_to_peer(p, &msg);
        }
    }

    /// The peers we have a tunnel with, either way (our clients' and our
    /// servers').
    pub(super) fn neighbours(&self) -> BTreeSet<Prefix> {
        (self.manager.tunnels().map(|(p, _)| *p))
            .chain(self.manager.served().iter().copied())
            .collect()
    }

    pub(super) fn send_datagrams(&mut self, out: Vec<(SocketAddr, Vec<u8>)>) {
        for (to, data) in out {
            self.effects.push_back(Effect::SendDatagram { to, data });
        }
    }

    /// Our network version's number (0: none we can read).
    pub(super) fn version_number(&self) -> u64 {
        re6st_proto::crypto::version_number(&self.link.version).unwrap_or(0)
    }

    /// The peer protocol's state (our address list, version, sessions).
    pub fn link(&self) -> &PeerLink {
        &self.link
    }

    /// Our renewed certificate, for the peer protocol's handshakes.
    pub fn use_identity(&mut self, me: Identity) {
        self.link.me = me;
    }
}

/// A version message carrying `version`.
pub fn version_message(version: &[u8]) -> Vec<u8> {
    [&[Code::Version as u8][..], version].concat()
}
