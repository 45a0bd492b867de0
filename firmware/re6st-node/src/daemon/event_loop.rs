//! The event loop: awaits only its channels, sockets, signals and timers;
//! gives each event to the core and carries out the effects it returns
//! (the children it holds: babeld and the OpenVPN servers, here; the rest
//! in [`Node`](super::node::Node)). Slow work runs in tasks that report
//! back on a channel.

use std::path::{Path, PathBuf};
use std::time::Duration;

use re6st_proto::netconfig::NetworkConfig;
use tokio::net::{UdpSocket, UnixDatagram};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::error::NodeError;
use super::log::log;
use super::node::Node;
use super::options::Options;
use super::tasks::{run_kernel_jobs, send_babel_commands, Done, KernelJob};
use crate::babel::config::BabelConfig;
use crate::babel::monitor::MonitorEvent;
use crate::nat::advertised::Mapping;
use crate::nat::upnp::Upnp;
use crate::openvpn::args::{server, Common};
use crate::openvpn::management;
use re6st_node_core::node::{Effect, Input};
use re6st_node_core::peer_link::bind_address;

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_node(
    o: Options,
    mut node: Node,
    config: &NetworkConfig,
    dh: &Path,
    servers: Vec<(u16, re6st_proto::address::Proto)>,
    max_clients: u32,
    my_ip: std::net::Ipv6Addr,
    subnet_len: u8,
    hook_sock: PathBuf,
    inbox: Inbox,
) -> Result<(), NodeError> {
    let Inbox {
        done: mut done_rx,
        babel_commands,
        kernel_jobs,
    } = inbox;
    tokio::spawn(send_babel_commands(
        node.babel_socket.clone(),
        babel_commands,
    ));
    tokio::spawn(run_kernel_jobs(kernel_jobs, o.verbose));
    let v = o.verbose;
    let server_ifaces: Vec<String> = servers
        .iter()
        .map(|(_, proto)| format!("re6stnet-{proto}"))
        .collect();
    node.server_ifaces = server_ifaces.clone();
    let spawn_servers = |common: &Common, max_clients: u32| -> Result<Vec<Child>, NodeError> {
        let mut children = Vec::new();
        for (port, proto) in &servers {
            let iface = format!("re6stnet-{proto}");
            let mut args = server(common, &iface, *port, *proto, max_clients, dh);
            let mgmt = management::socket_path(&o.run, &iface);
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
    };
    let mut children = spawn_servers(&node.common, max_clients)?;
    let mut interfaces: Vec<String> = server_ifaces.clone();
    interfaces.extend((1..=node.client_count).map(|i| format!("re6stnet{i}")));
    interfaces.extend(o.interfaces.iter().cloned());
    let mut babel = BabelConfig {
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
    // With an IPv4 payload OpenVPN gives the taps their IPv4 address, which
    // the table exchanges would not change.
    if node.ipv4.is_none() {
        let mut taps = server_ifaces.clone();
        taps.extend((1..=node.client_count).map(|i| format!("re6stnet{i}")));
        node.handle(Input::ExchangeTaps(taps));
    }
    let babel_log = o.log.join("babeld.log");
    let spawn_babel = |b: &BabelConfig| {
        let _ = std::fs::remove_file(&b.pidfile);
        let _ = std::fs::remove_file(&b.control_socket);
        let mut child = super::child::command("babeld")
            .args(b.args())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(super::babel_log::pump(stderr, babel_log.clone()));
        }
        Ok::<_, std::io::Error>(child)
    };
    let mut babeld = Some(spawn_babel(&babel).map_err(NodeError::spawn("babeld"))?);
    // Neighbours coming and going: an under-connected node dumps at once.
    // And any news of the route to the registry's node.
    let watched: Vec<(std::net::IpAddr, u8)> = node
        .core
        .config()
        .registry_prefix
        .and_then(|p| node.network.concat(&p).ok())
        .map(|s| (std::net::IpAddr::V6(s.to_ipv6()), s.len()))
        .into_iter()
        .collect();
    let mut babel_links = crate::babel::monitor::spawn(node.babel_socket.clone(), watched);
    // Revoked peers that a server could not drop alone.
    let (dropped_tx, mut dropped_rx) = tokio::sync::mpsc::channel::<String>(4);
    let upstream_sock = o.run.join("babeld.sock");
    let upstream_ctl = tokio::spawn(crate::babel::upstream_ctl::serve(
        upstream_sock.clone(),
        node.babel_socket.clone(),
    ));
    let hook = UnixDatagram::bind(&hook_sock).map_err(NodeError::file(&hook_sock))?;
    let udp = UdpSocket::bind(bind_address())
        .await
        .map_err(NodeError::PeerSocket)?;
    let signal = |kind| {
        tokio::signal::unix::signal(kind).map_err(|source| NodeError::Process {
            what: "signal handlers",
            source,
        })
    };
    let mut sigterm = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = signal(tokio::signal::unix::SignalKind::interrupt())?;
    // Upstream's --up and --daemon: user commands once we are set up.
    if let Some(up) = &o.up {
        let status = Command::new("sh")
            .args(["-c", up])
            .status()
            .await
            .map_err(NodeError::spawn("--up"))?;
        if !status.success() {
            return Err(NodeError::Up(status));
        }
    }
    let mut daemons = Vec::new();
    for cmd in &o.daemon {
        daemons.push(
            super::child::command("sh")
                .args(["-c", cmd])
                .spawn()
                .map_err(NodeError::spawn(format!("--daemon {cmd:?}")))?,
        );
    }
    let ctl_path = o.run.join(crate::status::ctl::SOCKET);
    let _ = std::fs::remove_file(&ctl_path);
    let ctl = tokio::net::UnixListener::bind(&ctl_path).map_err(NodeError::file(&ctl_path))?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut buf = vec![0u8; 65536];
    let mut hook_buf = vec![0u8; 4096];
    log(
        2,
        v,
        format!("node {} up, address {my_ip}", node.prefix.to_subnet()),
    );
    let (upnp, mut mapping) = if node.advertised.wants_upnp() {
        let (u, rx) = Upnp::start(node.advertised.mappable(), v);
        (Some(u), Some(rx))
    } else {
        (None, None)
    };
    let mut reexec = false;
    'run: loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            Some(m) = mapping_changed(&mut mapping) => node.set_mapping(m),
            Some(event) = babel_links.recv() => node.handle(match event {
                MonitorEvent::LinksChanged => Input::RoutingChanged,
                MonitorEvent::NeighbourUsable(iface) => Input::NeighbourUsable(iface),
            }),
            Some(failed) = dropped_rx.recv() => node.handle(Input::DropFailed(failed)),
            _ = sigint.recv() => break,
            status = wait_child(&mut babeld) => {
                babeld = None;
                node.handle(Input::BabeldExited { status: format!("{status:?}") });
            }
            _ = sleep_until(node.core.poll_timeout().map(tokio::time::Instant::from_std)) => {
                node.handle(Input::Timer);
            }
            r = ctl.accept() => {
                if let Ok((stream, _)) = r {
                    node.answer_status(stream);
                }
            }
            Some(d) = done_rx.recv() => node.on_done(d),
            r = hook.recv_from(&mut hook_buf) => {
                if let Ok((n, from)) = r {
                    node.hook_event(&hook_buf[..n], from.as_pathname());
                }
            }
            r = udp.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    node.datagram(from, buf[..n].to_vec());
                }
            }
            _ = tick.tick() => {
                node.client_mode_tunnel();
                node.reap_clients();
                // Server checks, registry calls, announcements, kernel
                // checks, cache saves and the tunnel manager's tick.
                node.handle(Input::Tick);
            }
        }
        // What the core decided, carried out.
        while let Some(effect) = node.core.poll_effect() {
            match effect {
                Effect::StartBabeld => {
                    babel.interfaces = node.babel_interfaces();
                    match spawn_babel(&babel) {
                        Ok(c) => {
                            babeld = Some(c);
                            node.handle(Input::BabeldStarted { restarted: true });
                        }
                        Err(e) => node.handle(Input::BabeldStartFailed {
                            error: e.to_string(),
                        }),
                    }
                }
                Effect::AnswerHook { to, accept } => {
                    let _ = hook.send_to(&[u8::from(accept)], &to).await;
                }
                Effect::CheckServers => {
                    // An OpenVPN server that exited (killed, crashed): its
                    // peers lost their tunnels; serve them again.
                    for (c, iface) in children.iter_mut().zip(&server_ifaces) {
                        if let Ok(Some(status)) = c.try_wait() {
                            node.handle(Input::ServerExited {
                                iface: iface.clone(),
                                status: status.to_string(),
                            });
                        }
                    }
                }
                Effect::Reexec => {
                    reexec = true;
                    break 'run;
                }
                Effect::RestartBabeld => {
                    babel.hello = node.core.config().hello;
                    babel.default = node.core.config().babel_default.clone();
                    babel.hmac_sign = node
                        .core
                        .config()
                        .babel_hmac_sign
                        .clone()
                        .filter(|k| !k.is_empty());
                    babel.hmac_accept = node.core.config().babel_hmac_accept.clone();
                    node.handle(Input::BabelDefaults(babel.interface_defaults()));
                    babel.interfaces = node.babel_interfaces();
                    // A babeld waiting for its restart takes the new
                    // parameters then. A running one is killed, not
                    // stopped: its routes stay in the kernel and carry
                    // traffic until the new babeld has converged (tens of
                    // seconds).
                    if let Some(mut old) = babeld.take() {
                        let _ = old.kill().await;
                        babeld = Some(spawn_babel(&babel).map_err(NodeError::spawn("babeld"))?);
                        node.handle(Input::BabeldStarted { restarted: false });
                    }
                }
                Effect::DropServed(serials) => node.drop_served(&serials, &dropped_tx),
                Effect::RestartServers => {
                    log(1, v, "restarting the OpenVPN servers");
                    // SIGKILL: gone at once, their ports free for the new
                    // ones.
                    for mut c in std::mem::take(&mut children) {
                        let _ = c.kill().await;
                    }
                    node.handle(Input::ServersRestarted);
                    let max = o.max_clients.unwrap_or(node.core.config().max_clients);
                    children = spawn_servers(&node.common, max)?;
                    for iface in &server_ifaces {
                        node.handle(Input::InterfaceTakenBack(iface.clone()));
                    }
                }
                other => node.carry_out(other, &udp).await,
            }
        }
    }
    log(2, v, "stopping");
    if let Some(u) = upnp {
        u.stop().await;
    }
    node.save_cache_now();
    node.flush_logs();
    for (_, mut c) in std::mem::take(&mut node.clients) {
        let _ = c.kill().await;
    }
    if let Some(mut c) = node.client_mode_child.take() {
        let _ = c.kill().await;
    }
    for mut c in children {
        let _ = c.kill().await;
    }
    // --daemon commands: TERM, then KILL 5 s later, as upstream.
    for d in &daemons {
        if let Some(pid) = d.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for mut d in daemons {
        if tokio::time::timeout(Duration::from_secs(5), d.wait())
            .await
            .is_err()
        {
            let _ = d.kill().await;
        }
    }
    if let Some(mut b) = babeld {
        stop_babeld(&mut b).await;
    }
    upstream_ctl.abort();
    let _ = std::fs::remove_file(&upstream_sock);
    let _ = std::fs::remove_file(&ctl_path);
    let _ = std::fs::remove_file(&hook_sock);
    if reexec {
        return Err(NodeError::Restart);
    }
    Ok(())
}

/// The receiving ends of the node's channels.
pub(super) struct Inbox {
    pub(super) done: mpsc::UnboundedReceiver<Done>,
    pub(super) babel_commands: mpsc::UnboundedReceiver<Vec<String>>,
    pub(super) kernel_jobs: mpsc::UnboundedReceiver<KernelJob>,
}

/// A child's exit; never ready without one.
async fn wait_child(child: &mut Option<Child>) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

/// `at`, if there is one; never ready without.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Stops babeld for good, the way that lets it retract its routes (SIGTERM:
/// neighbours reroute at once), killing it if it does not within 5 s.
async fn stop_babeld(babeld: &mut Child) {
    if let Some(pid) = babeld.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(5), babeld.wait())
        .await
        .is_err()
    {
        let _ = babeld.kill().await;
    }
}

/// The next port mapping from the UPnP task; never ready without one.
async fn mapping_changed(
    rx: &mut Option<tokio::sync::watch::Receiver<Option<Mapping>>>,
) -> Option<Option<Mapping>> {
    match rx {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            // The task ended: nothing more will come.
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}
