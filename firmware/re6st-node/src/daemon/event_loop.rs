//! The event loop: awaits only its channels, sockets, signals and timers;
//! gives each event to the core and carries out the effects it returns,
//! through the [`Children`] it holds (babeld, the OpenVPN servers) and the
//! [`Node`] (everything else). Slow work runs in tasks that report back on
//! a channel.

use std::path::{Path, PathBuf};
use std::time::Duration;

use re6st_proto::netconfig::NetworkConfig;
use tokio::net::{UdpSocket, UnixDatagram};
use tokio::process::Command;
use tokio::sync::mpsc;

use super::children::Children;
use super::error::NodeError;
use super::log::log;
use super::node::Node;
use super::options::Options;
use super::tasks::{run_kernel_jobs, send_babel_commands, Done, KernelJob};
use crate::babel::monitor::MonitorEvent;
use crate::nat::advertised::Mapping;
use crate::nat::upnp::Upnp;
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
    let mut children = Children::start(
        &o,
        &mut node,
        config,
        dh,
        servers,
        max_clients,
        my_ip,
        subnet_len,
    )?;
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
    children.start_daemons(&o.daemon)?;
    let ctl_path = o.run.join(crate::status::ctl::SOCKET);
    let _ = std::fs::remove_file(&ctl_path);
    let ctl = tokio::net::UnixListener::bind(&ctl_path).map_err(NodeError::file(&ctl_path))?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Room for the largest datagram, left uninitialised: only what a
    // datagram fills is ever touched (peer datagrams are small; zeroed,
    // the 64 KiB were all private memory).
    let mut buf: Vec<u8> = Vec::with_capacity(65536);
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
            status = children.babeld_exited() => node.handle(Input::BabeldExited { status }),
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
            r = udp.recv_buf_from(&mut buf) => {
                if let Ok((_, from)) = r {
                    node.datagram(from, buf.to_vec());
                }
                buf.clear();
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
                Effect::StartBabeld => children.start_babeld(&mut node),
                Effect::AnswerHook { to, accept } => {
                    let _ = hook.send_to(&[u8::from(accept)], &to).await;
                }
                Effect::CheckServers => children.check_servers(&mut node),
                Effect::Reexec => {
                    reexec = true;
                    break 'run;
                }
                Effect::RestartBabeld => children.restart_babeld(&mut node).await?,
                Effect::DropServed(serials) => node.drop_served(&serials, &dropped_tx),
                Effect::RestartServers => {
                    let max = o.max_clients.unwrap_or(node.core.config().max_clients);
                    children.restart_servers(&mut node, max).await?;
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
    children.stop().await;
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

/// `at`, if there is one; never ready without.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
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
