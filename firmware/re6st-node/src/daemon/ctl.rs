//! `re6st ctl status`: what the node answers, from a fresh dump when
//! babeld gives one quickly.

use std::path::PathBuf;
use std::time::Duration;

use re6st_node_core::tunnel::RoutingView;
use re6st_proto::prefix::Prefix;

use super::node::Node;
use super::tasks::Done;
use crate::openvpn::management;

/// At most this many `re6st ctl status` dumps at a time.
const STATUS_DUMPS: usize = 4;
/// How long `re6st ctl status` waits for a fresh dump of babeld's routes
/// before it answers with the tunnel manager's view.
const STATUS_DUMP_WAIT: Duration = Duration::from_millis(500);

impl Node {
    /// Sends our network version to every tunnel neighbour: right after a
    /// change, then every 30 s, so that a neighbour that missed it (its
    /// tunnel was restarting) still gets it. Same versions cost nothing.
    pub(super) fn status(&self, fresh: Option<&RoutingView>) -> crate::status::NodeStatus {
        let view = fresh.unwrap_or(self.core.manager().routing());
        let subnet = |p: &Prefix| {
            self.network
                .concat(p)
                .map(|s| format!("{}/{}", s.to_ipv6(), s.len()))
                .unwrap_or_else(|_| p.to_subnet())
        };
        crate::status::NodeStatus {
            network: format!("{}/{}", self.network.to_ipv6(), self.network.len()),
            subnet: subnet(&self.prefix),
            address: self.my_ip.to_string(),
            config_version: re6st_proto::crypto::version_number(&self.core.link().version)
                .unwrap_or(0),
            cert_not_after: self.cert_not_after,
            registry_cut: self.core.manager().is_disconnected(),
            cached_peers: self.core.manager().cache().len(),
            known_nodes: view.known.len(),
            tunnels: self
                .core
                .manager()
                .client_tunnels()
                .into_iter()
                .map(|t| crate::status::TunnelStatus {
                    peer: subnet(&t.peer),
                    iface: t.iface.clone(),
                    state: t.state.into(),
                    protocol: t.address.as_deref().and_then(crate::status::protocol_of),
                    address: t.address,
                    routes: view.routes_per_iface.get(&t.iface).copied().unwrap_or(0),
                    // `re6st ctl` reads the interface's counters.
                    rx_bytes: None,
                    tx_bytes: None,
                })
                .collect(),
            served: self.core.manager().served().iter().map(subnet).collect(),
            served_traffic: Vec::new(),
            reachable_at: self.core.link().my_address.clone(),
            ipv4: self.advertised.ipv4_source().into(),
            port_mappings: self
                .advertised
                .mapping()
                .map(|m| {
                    m.ports
                        .iter()
                        .map(|((port, proto), ext)| {
                            format!("{}:{ext}/{proto} -> {port}", m.external_ip)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            ipv4_payload: self.ipv4.map(|(ip, len)| format!("{ip}/{len}")),
            country: self.country.clone(),
            same_country: self.core.config().same_country.clone(),
            babeld_restarts: self.core.babeld_restarts(),
            openvpn_restarts: self.core.openvpn_restarts(),
            // Added by `re6st ctl`, which runs on the host.
            system: None,
        }
    }

    /// Answers `re6st ctl status` on `stream`: with a fresh dump (the
    /// manager's view may be minutes old) when babeld gives one quickly,
    /// else with the manager's view. At most [`STATUS_DUMPS`] dumps at a
    /// time: more clients get the manager's view at once.
    pub(super) fn answer_status(&mut self, stream: tokio::net::UnixStream) {
        if self.status_dumps >= STATUS_DUMPS {
            self.write_status(stream, None);
            return;
        }
        self.status_dumps += 1;
        let (source, done) = (self.view_source(), self.done.clone());
        tokio::spawn(async move {
            let view = tokio::time::timeout(STATUS_DUMP_WAIT, source.view())
                .await
                .ok()
                .flatten();
            let _ = done.send(Done::Status(stream, view));
        });
    }

    /// Writes the status in a task, with the byte counts of our servers'
    /// clients asked from their management sockets there.
    pub(super) fn write_status(
        &self,
        mut stream: tokio::net::UnixStream,
        view: Option<RoutingView>,
    ) {
        let mut status = self.status(view.as_ref());
        let sockets: Vec<(String, PathBuf)> = self
            .server_ifaces
            .iter()
            .map(|i| (i.clone(), management::socket_path(&self.o.run, i)))
            .collect();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            status.served_traffic = management::traffic(&sockets).await;
            let json = serde_json::to_vec(&status).unwrap_or_default();
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&json)).await;
        });
    }
}
