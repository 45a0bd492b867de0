//! The children the event loop holds itself: our OpenVPN servers, babeld
//! and the `--daemon` commands. Started with the node, restarted when the
//! core says so, stopped with it. (Our client tunnels' OpenVPNs are the
//! [`Node`]'s: see `clients.rs`.)

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use re6st_proto::address::Proto;
use re6st_proto::netconfig::NetworkConfig;
use tokio::process::Child;

use super::error::NodeError;
use super::log::log;
use super::node::Node;
use super::options::Options;
use crate::babel::config::BabelConfig;
use crate::openvpn::args::{server, Common};
use crate::openvpn::management;
use re6st_node_core::node::Input;

pub(super) struct Children {
    /// Our servers' ports and protocols, and their interfaces.
    servers: Vec<(u16, Proto)>,
    server_ifaces: Vec<String>,
    dh: PathBuf,
    run: PathBuf,
    /// The servers' OpenVPNs, in the order of `servers`.
    openvpn: Vec<Child>,
    /// babeld's command line, kept up to date with the network's
    /// configuration, and where its output goes.
    babel: BabelConfig,
    babel_log: PathBuf,
    /// None while babeld waits for its restart.
    babeld: Option<Child>,
    daemons: Vec<Child>,
}

impl Children {
    /// Starts the servers and babeld, and tells the core which interfaces
    /// babeld runs on and with which defaults.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        o: &Options,
        node: &mut Node,
        config: &NetworkConfig,
        dh: &Path,
        servers: Vec<(u16, Proto)>,
        max_clients: u32,
        my_ip: Ipv6Addr,
        subnet_len: u8,
    ) -> Result<Children, NodeError> {
        let server_ifaces: Vec<String> = servers
            .iter()
            .map(|(_, proto)| format!("re6stnet-{proto}"))
            .collect();
        node.server_ifaces = server_ifaces.clone();
        // Our taps (servers', then our client tunnels'); babeld also runs
        // on the `--interface`s.
        let mut taps = server_ifaces.clone();
        taps.extend((1..=node.client_count).map(|i| format!("re6stnet{i}")));
        let mut interfaces = taps.clone();
        interfaces.extend(o.interfaces.iter().cloned());
        let babel = BabelConfig {
            address: my_ip,
            subnet_len,
            ipv4: node.ipv4,
            network: node.network,
            gateway: o.gateway,
            ipv6_subtrees: true,
            hello: config.hello,
            default: config.babel_default.clone(),
            hmac_sign: config.babel_hmac_sign.clone().filter(|k| !k.is_empty()),
            hmac_accept: config.babel_hmac_accept.clone(),
            log: None,
            state: o.state.join("babeld.state"),
            pidfile: o.run.join("babeld.pid"),
            control_socket: node.babel_socket.clone(),
            extra: o.babel_args.clone(),
            interfaces,
        };
        node.handle(Input::BabelDefaults(babel.interface_defaults()));
        node.handle(Input::BabelInterfaces(babel.interfaces.clone()));
        // With an IPv4 payload OpenVPN gives the taps their IPv4 address,
        // which the table exchanges would not change.
        if node.ipv4.is_none() {
            node.handle(Input::ExchangeTaps(taps));
        }
        let mut c = Children {
            servers,
            server_ifaces,
            dh: dh.to_owned(),
            run: o.run.clone(),
            openvpn: Vec::new(),
            babel,
            babel_log: o.log.join("babeld.log"),
            babeld: None,
            daemons: Vec::new(),
        };
        c.openvpn = c.spawn_servers(&node.common, max_clients)?;
        c.babeld = Some(c.spawn_babeld().map_err(NodeError::spawn("babeld"))?);
        Ok(c)
    }

    /// Upstream's `--daemon`: user commands once we are set up.
    pub(super) fn start_daemons(&mut self, commands: &[String]) -> Result<(), NodeError> {
        for cmd in commands {
            self.daemons.push(
                super::child::command("sh")
                    .args(["-c", cmd])
                    .spawn()
                    .map_err(NodeError::spawn(format!("--daemon {cmd:?}")))?,
            );
        }
        Ok(())
    }

    fn spawn_servers(&self, common: &Common, max_clients: u32) -> Result<Vec<Child>, NodeError> {
        let mut children = Vec::new();
        for ((port, proto), iface) in self.servers.iter().zip(&self.server_ifaces) {
            let mut args = server(common, iface, *port, *proto, max_clients, &self.dh);
            let mgmt = management::socket_path(&self.run, iface);
            let _ = std::fs::remove_file(&mgmt);
            args.extend(management::args(&mgmt));
            children.push(
                super::child::command("openvpn")
                    .args(&args)
                    .spawn()
                    .map_err(NodeError::spawn("openvpn"))?,
            );
        }
        Ok(children)
    }

    fn spawn_babeld(&self) -> std::io::Result<Child> {
        let b = &self.babel;
        let _ = std::fs::remove_file(&b.pidfile);
        let _ = std::fs::remove_file(&b.control_socket);
        let mut child = super::child::command("babeld")
            .args(b.args())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(super::babel_log::pump(stderr, self.babel_log.clone()));
        }
        Ok(child)
    }

    /// babeld's exit (how it ended); never ready while none runs.
    pub(super) async fn babeld_exited(&mut self) -> String {
        let status = match &mut self.babeld {
            Some(c) => c.wait().await,
            None => std::future::pending().await,
        };
        self.babeld = None;
        format!("{status:?}")
    }

    /// babeld started again after its back-off.
    pub(super) fn start_babeld(&mut self, node: &mut Node) {
        self.babel.interfaces = node.babel_interfaces();
        match self.spawn_babeld() {
            Ok(c) => {
                self.babeld = Some(c);
                node.handle(Input::BabeldStarted { restarted: true });
            }
            Err(e) => node.handle(Input::BabeldStartFailed {
                error: e.to_string(),
            }),
        }
    }

    /// babeld with the network's new parameters. One waiting for its
    /// restart takes them then. A running one is killed, not stopped: its
    /// routes stay in the kernel and carry traffic until the new babeld has
    /// converged (tens of seconds).
    pub(super) async fn restart_babeld(&mut self, node: &mut Node) -> Result<(), NodeError> {
        let config = node.core.config();
        self.babel.hello = config.hello;
        self.babel.default = config.babel_default.clone();
        self.babel.hmac_sign = config.babel_hmac_sign.clone().filter(|k| !k.is_empty());
        self.babel.hmac_accept = config.babel_hmac_accept.clone();
        node.handle(Input::BabelDefaults(self.babel.interface_defaults()));
        self.babel.interfaces = node.babel_interfaces();
        if let Some(mut old) = self.babeld.take() {
            let _ = old.kill().await;
            self.babeld = Some(self.spawn_babeld().map_err(NodeError::spawn("babeld"))?);
            node.handle(Input::BabeldStarted { restarted: false });
        }
        Ok(())
    }

    /// Tells the core of any server that exited (killed, crashed): its
    /// peers lost their tunnels.
    pub(super) fn check_servers(&mut self, node: &mut Node) {
        for (c, iface) in self.openvpn.iter_mut().zip(&self.server_ifaces) {
            if let Ok(Some(status)) = c.try_wait() {
                node.handle(Input::ServerExited {
                    iface: iface.clone(),
                    status: status.to_string(),
                });
            }
        }
    }

    /// New servers (a new certificate or configuration, one exited, or a
    /// revoked peer not dropped alone).
    pub(super) async fn restart_servers(
        &mut self,
        node: &mut Node,
        max_clients: u32,
    ) -> Result<(), NodeError> {
        log(1, node.o.verbose, "restarting the OpenVPN servers");
        // SIGKILL: gone at once, their ports free for the new ones.
        for mut c in std::mem::take(&mut self.openvpn) {
            let _ = c.kill().await;
        }
        node.handle(Input::ServersRestarted);
        self.openvpn = self.spawn_servers(&node.common, max_clients)?;
        for iface in &self.server_ifaces {
            node.handle(Input::InterfaceTakenBack(iface.clone()));
        }
        Ok(())
    }

    /// Stops them all: the servers at once; `--daemon` commands with TERM,
    /// then KILL 5 s later, as upstream; babeld last.
    pub(super) async fn stop(self) {
        for mut c in self.openvpn {
            let _ = c.kill().await;
        }
        // All at once: they share the 5 s.
        for d in &self.daemons {
            terminate(d);
        }
        for mut d in self.daemons {
            wait_or_kill(&mut d).await;
        }
        // SIGTERM lets babeld retract its routes: neighbours reroute at once.
        if let Some(mut b) = self.babeld {
            terminate(&b);
            wait_or_kill(&mut b).await;
        }
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// Waits for a child told to stop, killing it if it has not within 5 s.
async fn wait_or_kill(child: &mut Child) {
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}
