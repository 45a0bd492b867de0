//! The peers' part of the node's effects: what we announce to them (port
//! mappings, the address they see us at), their datagrams and our
//! OpenVPN hooks' events handed to the core, and revoked peers dropped
//! from our servers.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::log::log;
use super::node::Node;
use crate::nat::advertised::Mapping;
use crate::openvpn::hook::Event;
use crate::openvpn::management;
use re6st_node_core::node::Input;

/// How long a revoked peer keeps its tunnel to our servers after we
/// announced the revoking version to it (see `Node::drop_served`).
const REVOKED_DROP_DELAY: Duration = Duration::from_secs(1);

impl Node {
    /// New port mappings on the gateway (or none any more).
    pub(super) fn set_mapping(&mut self, m: Option<Mapping>) {
        if self.advertised.set_mapping(m) {
            self.announce_change();
        }
    }

    /// A peer's server saw our client come from `ip`.
    pub(super) fn peer_saw(&mut self, ip: &str) {
        if let Ok(ip) = ip.parse() {
            if self.advertised.peer_saw(ip) {
                self.announce_change();
            }
        }
    }

    pub(super) fn announce_change(&mut self) {
        let address = self.advertised.render();
        log(
            2,
            self.o.verbose,
            format!("our address for peers: {address:?}"),
        );
        self.handle(Input::OurAddress(address));
    }

    /// Drops the connections to our servers that use a certificate just
    /// revoked (`serials`), alone: the other clients keep their tunnels,
    /// and so does a new connection of the same node with a renewed
    /// certificate. In a task, through each server's management socket; a
    /// failure is reported on `failed` (the servers are then restarted).
    pub(super) fn drop_served(
        &self,
        serials: &BTreeSet<u64>,
        failed: &tokio::sync::mpsc::Sender<String>,
    ) {
        let targets = self.core.served().links().using(serials);
        if targets.is_empty() {
            return;
        }
        let run = self.o.run.clone();
        let (v, failed) = (self.o.verbose, failed.clone());
        tokio::spawn(async move {
            // The revoking version, just announced, must get through the
            // tunnel first: a node cut before it learns of its revocation
            // only once alone (15 s) and checking the configuration. With
            // the servers restarted at once, it took 43 s in the revocation
            // test (tests/network_changes.rs) instead of 2 s.
            tokio::time::sleep(REVOKED_DROP_DELAY).await;
            for (iface, addresses) in &targets {
                let socket = management::socket_path(&run, iface);
                let r = management::kill_connections(&socket, addresses, Duration::from_secs(5));
                match r.await {
                    Ok(n) => {
                        log(
                            2,
                            v,
                            format!("revoked peers: dropped {n} of {addresses:?} from {iface}"),
                        );
                        // babeld keeps routing through the dropped peer
                        // until its link-quality estimate gives up on it
                        // (12 lost 1 s hellos; sooner as its cost doubles
                        // with each): it cannot forget one neighbour, and
                        // re-creating the interface is unsafe with stock
                        // babeld 1.12 (see `handover`).
                    }
                    Err(e) => {
                        let _ = failed.send(format!("{iface}: {e}")).await;
                    }
                }
            }
        });
    }

    /// A datagram on the peer protocol's port. One from a local socket
    /// is the registry's relay if the registry sent it (see
    /// `relay_source`), and dropped otherwise.
    pub(super) fn datagram(&mut self, from: SocketAddr, data: Vec<u8>) {
        if from.ip().to_canonical().is_loopback() {
            let our_uid = nix::unistd::geteuid().as_raw();
            if super::relay_source::trusted(from, our_uid) {
                self.handle(Input::Relay { from, data });
            } else {
                self.handle(Input::RelayRefused { from });
            }
        } else {
            self.handle(Input::Datagram { from, data });
        }
    }

    pub(super) fn hook_event(&mut self, data: &[u8], from: Option<&Path>) {
        let Ok(event) = Event::decode(data) else {
            return;
        };
        self.handle(Input::Hook {
            event,
            reply_to: from.map(Path::to_path_buf),
        });
    }
}
