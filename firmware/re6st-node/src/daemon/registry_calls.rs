//! The registry's part of the node's effects: bootstrap peers, the network
//! configuration and certificate renewal, each asked in a task that
//! reports back, and what their answers change in the shell.

use re6st_proto::cert;
use re6st_proto::netconfig::NetworkConfig;
use re6st_proto::peer::Identity;

use super::clock::now;
use super::log::log;
use super::node::Node;
use super::renewal;
use super::tasks::{self, Done};
use crate::state::netconfig as netconfig_cache;
use re6st_node_core::node::Input;

impl Node {
    /// Asks the registry for a peer to bootstrap from.
    pub(super) fn ask_bootstrap(&mut self) {
        let (registry, done) = (self.registry.clone(), self.done.clone());
        tokio::spawn(async move {
            let answer = registry.lock().await.bootstrap_peer().await;
            let _ = done.send(Done::Bootstrap(answer));
        });
    }

    /// Starts a renewal check (see [`tasks::renew`]).
    pub(super) fn check_renewal(&mut self) {
        let input = tasks::RenewalInput {
            registry: self.registry.clone(),
            ca: self.ca.clone(),
            ca_path: self.o.ca.clone(),
            cert: self.my_cert.clone(),
            cert_path: self.o.cert.clone(),
            key: self.key.clone(),
            revoked: self.core.config().crl.contains(&self.core.own_serial()),
            now: now(),
            verbose: self.o.verbose,
        };
        let done = self.done.clone();
        tokio::spawn(async move {
            let _ = done.send(tasks::renew(input).await);
        });
    }

    /// Takes our renewed certificate into use: the peer protocol's identity
    /// and the client tunnels (they reconnect with it; the caller restarts
    /// the servers).
    pub(super) fn use_new_cert(&mut self) {
        match Identity::new(self.ca.clone(), self.my_cert.clone(), self.key.clone()) {
            Ok(me) => self.core.use_identity(me),
            Err(e) => log(1, self.o.verbose, format!("new certificate: {e}")),
        }
        let serial = cert::serial(&self.my_cert)
            .ok()
            .and_then(|s| u64::try_from(s).ok());
        self.cert_not_after = renewal::unix(self.my_cert.not_after()).unwrap_or(0);
        // The manager first: each tunnel's exit is then a restart with the
        // new certificate, to the same peer (see `on_new_certificate`).
        self.handle(Input::NewCertificate { serial });
        // Killed but kept: reaping them tells the manager, which reconnects.
        for c in self.clients.values_mut() {
            let _ = c.start_kill();
        }
        if let Some(c) = self.client_mode_child.take() {
            tasks::kill_in_background(c);
        }
        self.reap_clients();
    }

    /// Starts fetching the network configuration (a newer one exists).
    pub(super) fn fetch_config(&mut self) {
        let (registry, done) = (self.registry.clone(), self.done.clone());
        tokio::spawn(async move {
            let answer = registry.lock().await.network_config().await;
            let _ = done.send(Done::NetworkConfig(answer));
        });
    }

    /// Takes a newer network configuration into use: cached, its version
    /// and CRL for the peer protocol, its hello for OpenVPN's time-out.
    pub(super) fn use_config(&mut self, new: &NetworkConfig) {
        if let Err(e) = netconfig_cache::save(&self.o.state.join("network-config.bin"), new) {
            log(
                1,
                self.o.verbose,
                format!("cannot cache the network configuration: {e}"),
            );
        }
        self.common.ping_exit = 4 * new.hello;
    }
}
