//! Our client tunnels' OpenVPN processes: started, reaped, stopped,
//! and the routes to their peers through `--remote-gateway`.

use re6st_proto::prefix::Prefix;

use super::log::log;
use super::node::Node;
use super::tasks;
use crate::kernel;
use crate::openvpn::args::client;
use re6st_node_core::node::Input;

impl Node {
    /// The tunnel to `prefix` no longer uses its peer address.
    pub(super) fn forget_peer_route(&mut self, prefix: Prefix) {
        if let Some(ip) = self.tunnel_peers.remove(&prefix) {
            if let Some(op) = self.remote_gateways.remove(ip) {
                kernel::apply_logged(&[op], self.o.verbose);
            }
        }
    }

    /// `--client`: keeps the one OpenVPN client running.
    pub(super) fn client_mode_tunnel(&mut self) {
        let Some(remotes) = &self.client_mode else {
            return;
        };
        let running = self
            .client_mode_child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if running {
            return;
        }
        let args = crate::openvpn::args::client_mode(&self.common, "re6stnet1", remotes);
        match super::child::command("openvpn").args(&args).spawn() {
            Ok(c) => self.client_mode_child = Some(c),
            Err(e) => log(1, self.o.verbose, format!("openvpn: {e}")),
        }
    }

    pub(super) fn reap_clients(&mut self) {
        let exited: Vec<Prefix> = self
            .clients
            .iter_mut()
            .filter_map(|(p, c)| matches!(c.try_wait(), Ok(Some(_))).then_some(*p))
            .collect();
        for p in exited {
            self.clients.remove(&p);
            self.handle(Input::TunnelExited(p));
        }
    }

    /// Starts a client tunnel's OpenVPN to `address` on `iface`.
    pub(super) fn start_tunnel(
        &mut self,
        prefix: Prefix,
        iface: &str,
        address: re6st_proto::address::Address,
    ) {
        if let Some(old) = self.clients.remove(&prefix) {
            tasks::kill_in_background(old);
        }
        self.forget_peer_route(prefix);
        if let Some(op) = self.remote_gateways.add(address.ip) {
            kernel::apply_logged(&[op], self.o.verbose);
        }
        self.tunnel_peers.insert(prefix, address.ip);
        let args = client(
            &self.common,
            iface,
            &prefix.to_subnet(),
            &[(address.ip.to_string(), address.port, address.proto)],
        );
        match super::child::command("openvpn").args(&args).spawn() {
            Ok(c) => {
                self.clients.insert(prefix, c);
            }
            Err(e) => self.handle(Input::TunnelStartFailed {
                prefix,
                error: e.to_string(),
            }),
        }
    }

    pub(super) fn stop_tunnel(&mut self, prefix: Prefix) {
        if let Some(c) = self.clients.remove(&prefix) {
            tasks::kill_in_background(c);
        }
        self.forget_peer_route(prefix);
    }
}
