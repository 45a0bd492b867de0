//! The `re6stnet` event loop: sets the node up, runs babeld and the
//! OpenVPN servers, drives the tunnel manager, answers peers, and undoes
//! everything on SIGTERM/SIGINT.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use openssl::pkey::PKey;
use openssl::x509::X509;
use re6st_proto::cert;
use re6st_proto::message::{Code, Message};
use re6st_proto::netconfig::NetworkConfig;
use re6st_proto::peer::{Identity, PeerTable};
use re6st_proto::prefix::{node_address, Prefix};
use re6st_proto::relay;
use re6st_registry_client::client::RegistryClient;
use re6st_registry_client::transport::RegistryUrl;
use tokio::net::{UdpSocket, UnixDatagram};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::handover;
use super::log::{error, log};
use super::options::Options;
use super::renewal;
use super::tasks::{self, send_babel_commands, Done, Renewed, ViewSource};
use crate::babel::config::BabelConfig;
use crate::babel::kernel_check::{KernelCheck, KernelRoute, Net};
use crate::babel::monitor::MonitorEvent;
use crate::babel::table::Table;
use crate::kernel::netlink::Netlink;
use crate::kernel::op::{PROTO_BOOT, PROTO_STATIC};
use crate::kernel::{self, Addr, KernelError, NetOp, Route, Setup};
use crate::nat::advertised::{Advertised, Mapping};
use crate::nat::upnp::Upnp;
use crate::openvpn::args::{client, server, Common};
use crate::openvpn::hook::Event;
use crate::openvpn::management;
use crate::state::{netconfig as netconfig_cache, peers as peers_file, peers::DEFAULT_CAPACITY};
use crate::underlay::RemoteGateways;
use re6st_node_core::node::peers::version_message;
use re6st_node_core::node::servers::Renewed as CoreRenewed;
use re6st_node_core::node::{Effect, Input, NodeCore, Now};
use re6st_node_core::peer_link::{bind_address, PeerEvent, PeerLink};
use re6st_node_core::tunnel::{Config, CountryRule, Manager, RoutingView};

/// Wall-clock seconds: for what is about dates (certificates, renewal,
/// the peer protocol's certificate checks).
pub(crate) fn now() -> i64 {
    (now_us() / 1_000_000) as i64
}

/// The wall clock in microseconds (the peer link's session secrets).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Random bytes for the peer link's session secrets.
fn random_bytes(b: &mut [u8]) {
    let _ = openssl::rand::rand_bytes(b);
}

/// Seconds for intervals and timeouts (the tunnel manager, announcements,
/// saves, kernel checks): the wall clock when the daemon started plus the
/// monotonic time since, so that the wall clock set back (or forward) by
/// NTP or by hand neither freezes nor fires them.
pub(crate) fn mono() -> i64 {
    static START: std::sync::OnceLock<(i64, std::time::Instant)> = std::sync::OnceLock::new();
    let (wall, start) = START.get_or_init(|| (now(), std::time::Instant::now()));
    wall + start.elapsed().as_secs() as i64
}

/// The time now, for the core.
fn clock() -> Now {
    Now {
        at: std::time::Instant::now(),
        mono: mono(),
        wall: now(),
    }
}

struct Node {
    o: Options,
    network: Prefix,
    prefix: Prefix,
    link: PeerLink,
    babel_socket: PathBuf,
    common: Common,
    clients: BTreeMap<Prefix, Child>,
    /// Shared with the tasks that call the registry (one call at a time).
    registry: Arc<tokio::sync::Mutex<RegistryClient>>,
    /// Where tasks report what they did (the loop's only other input).
    done: mpsc::UnboundedSender<Done>,
    /// Lines for babeld, sent in order by one task.
    babel_commands: mpsc::UnboundedSender<Vec<String>>,
    /// The node's decisions (and the tunnel manager).
    core: NodeCore,
    /// `re6st ctl status` dumps under way.
    status_dumps: usize,
    forward_to: Option<SocketAddr>,
    client_count: usize,
    /// For the status command.
    cert_not_after: i64,
    my_ip: std::net::Ipv6Addr,
    ca: X509,
    /// Our OpenVPN servers' interfaces (their management sockets are named
    /// after them).
    server_ifaces: Vec<String>,
    my_cert: X509,
    key: PKey<openssl::pkey::Private>,
    /// `--client`: the addresses of our one tunnel, and its OpenVPN.
    client_mode: Option<Vec<(String, u16, re6st_proto::address::Proto)>>,
    client_mode_child: Option<Child>,
    /// What we announce to peers, and how it is learned.
    advertised: Advertised,
    /// Our IPv4 payload address and subnet length, if the network has one.
    ipv4: Option<(std::net::Ipv4Addr, u8)>,
    /// Our country (`--country`, or the registry's GeoIP).
    country: Option<String>,
    /// `--remote-gateway`, and the peer address each client tunnel uses.
    remote_gateways: RemoteGateways,
    tunnel_peers: BTreeMap<Prefix, std::net::IpAddr>,
    kernel_check: KernelCheck,
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let o = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    super::log::init(o.verbose);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error(e);
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(NodeError::Restart) => {
            // Everything was cleaned up: start over with the same command
            // line, as upstream does after such a change.
            drop(rt);
            use std::os::unix::process::CommandExt;
            let mut args = std::env::args_os();
            let argv0 = args.next().unwrap_or_default();
            let e = std::process::Command::new("/proc/self/exe")
                .arg0(argv0)
                .args(args)
                .exec();
            error(format!("cannot restart: {e}"));
            ExitCode::FAILURE
        }
        Err(e) => {
            error(e);
            ExitCode::FAILURE
        }
    }
}

async fn network_config(
    o: &Options,
    registry: &mut RegistryClient,
    ca: &X509,
) -> Result<NetworkConfig, String> {
    let path = o.state.join("network-config.bin");
    let mut delay = 1;
    loop {
        match registry.network_config().await {
            Ok(c) => {
                if let Err(e) = netconfig_cache::save(&path, &c) {
                    log(
                        1,
                        o.verbose,
                        format!("cannot cache the network configuration: {e}"),
                    );
                }
                return Ok(c);
            }
            Err(e) => {
                match netconfig_cache::load(&path) {
                    Ok(c) if c.verify_version(ca).is_ok() => {
                        log(1, o.verbose, format!("registry unreachable ({e}): using the cached network configuration"));
                        return Ok(c);
                    }
                    _ => {
                        log(
                            1,
                            o.verbose,
                            format!(
                                "registry unreachable ({e}), no usable cache: retrying in {delay}s"
                            ),
                        );
                        tokio::time::sleep(Duration::from_secs(delay)).await;
                        delay = (delay * 2).min(60);
                    }
                }
            }
        }
    }
}

async fn run(o: Options) -> Result<(), NodeError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let ca = X509::from_pem(&read(&o.ca)?).map_err(|e| format!("CA: {e}"))?;
    let my_cert = X509::from_pem(&read(&o.cert)?).map_err(|e| format!("certificate: {e}"))?;
    let key = PKey::private_key_from_pem(&read(&o.key)?).map_err(|e| format!("key: {e}"))?;
    let network = cert::network_from_ca(&ca).map_err(|e| e.to_string())?;
    let prefix = cert::node_prefix(&my_cert).map_err(|e| e.to_string())?;
    // Weak DH parameters let every OpenVPN server of ours die at start, in
    // a loop: refuse them before anything runs.
    let cached_dh = o.state.join("dh.pem");
    match &o.dh {
        Some(d) => re6st_proto::dh::check(&read(d)?, &d.display().to_string())
            .map_err(|e| format!("--dh {}: {e}", d.display()))?,
        None if cached_dh.exists() => {
            re6st_proto::dh::check(&read(&cached_dh)?, &cached_dh.display().to_string()).map_err(
                |e| {
                    format!(
                        "{} (the registry's, fetched earlier): {e}; or, if the registry \
                         serves good ones now, remove this copy",
                        cached_dh.display()
                    )
                },
            )?
        }
        None => 0,
    };
    for d in [&o.state, &o.run, &o.log] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let _instance = super::instance::acquire(&o.run, INSTANCE_WAIT, o.verbose).await?;
    let url = RegistryUrl::parse(&o.registry).map_err(|e| e.to_string())?;
    let mut registry = RegistryClient::new(
        url,
        ca.clone(),
        key.clone(),
        &prefix,
        Duration::from_secs(20),
    );
    let config = network_config(&o, &mut registry, &ca).await?;
    let dh = match &o.dh {
        Some(d) => d.clone(),
        None => {
            let d = cached_dh;
            // A copy there was checked above.
            if !d.exists() {
                let pem = registry
                    .dh()
                    .await
                    .map_err(|e| format!("DH parameters: {e}"))?;
                // Not kept: the registry's operator has to replace them.
                re6st_proto::dh::check(&pem, "dh.pem").map_err(|e| {
                    format!(
                        "DH parameters from the registry (getDh): {e}, on the registry's \
                         host, then restart re6st-registry with --dh dh.pem"
                    )
                })?;
                crate::state::write_atomic(&d, &pem, 0o644).map_err(|e| e.to_string())?;
            }
            d
        }
    };
    let subnet = network.concat(&prefix).map_err(|e| e.to_string())?;
    let own_serial = my_cert
        .serial_number()
        .to_bn()
        .ok()
        .and_then(|b| b.to_dec_str().ok()?.parse().ok())
        .unwrap_or(0);
    let cert_not_after = openssl::asn1::Asn1Time::from_unix(0)
        .and_then(|epoch| epoch.diff(my_cert.not_after()))
        .map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs))
        .unwrap_or(0);
    let my_ip = node_address(&network, &prefix).map_err(|e| e.to_string())?;
    // IPv4 payload: our subnet of the network's IPv4 network, numbered by
    // our certificate's subject serialNumber.
    let ipv4 = config.ipv4.and_then(|p| {
        let serial = cert::subject_serial(&my_cert).ok()?;
        Some((p, p.node_address(serial)?))
    });
    if config.ipv4.is_some() && ipv4.is_none() {
        log(
            1,
            o.verbose,
            "IPv4 payload disabled: no subnet for our certificate in the network's parameters",
        );
    }
    // --client: no server, no tunnel of the manager's, one OpenVPN client
    // (on re6stnet1) to the given addresses.
    let client_mode: Option<Vec<(String, u16, re6st_proto::address::Proto)>> = match &o.client {
        None => None,
        Some(list) => {
            let parsed = re6st_proto::address::parse_list(list);
            if parsed.addresses.is_empty() {
                return Err(format!("--client {list:?}: no usable address").into());
            }
            Some(
                parsed
                    .addresses
                    .iter()
                    .map(|a| (a.ip.to_string(), a.port, a.proto))
                    .collect(),
            )
        }
    };
    let client_count = if client_mode.is_some() {
        0
    } else {
        o.client_count.unwrap_or(config.client_count as usize)
    };
    let taps = if client_mode.is_some() {
        1
    } else {
        client_count
    };
    let max_clients = o.max_clients.unwrap_or(config.max_clients);
    let servers = if client_mode.is_some() {
        Vec::new()
    } else {
        o.servers()?
    };
    let disabled = o.disabled()?;
    let timeout = 4 * i64::from(config.hello);
    let hook_sock = o.run.join("ovpn.sock");
    let _ = std::fs::remove_file(&hook_sock);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let common = Common {
        ca: o.ca.clone(),
        cert: o.cert.clone(),
        key: o.key.clone(),
        encrypt: config.encrypt,
        hook: format!("{} ovpn-hook {}", exe.display(), hook_sock.display()),
        ping_exit: timeout as u32,
        log_dir: o.ovpnlog.then(|| o.log.clone()),
        extra: {
            let mut extra = o.openvpn_args.clone();
            // Every tunnel carries our IPv4 subnet: OpenVPN sets it on the tap.
            if let Some((_, (ip4, len))) = ipv4 {
                let mask = std::net::Ipv4Addr::from(ipv4_mask(len));
                extra.extend(["--ifconfig".into(), ip4.to_string(), mask.to_string()]);
            }
            extra
        },
    };
    // Our addresses, announced to peers.
    let country = our_country(&o, &config, &mut registry).await;
    let advertised = Advertised::new(&o.ip, &servers, country.as_deref())?;
    let my_address = advertised.render();

    // Checked before anything is set up.
    let remote_gateways = RemoteGateways::new(&o.remote_gateways)?;
    for gw in &o.remote_gateways {
        check_on_link(gw)?;
    }
    let v = o.verbose;
    // Undone when `run` returns, whatever way.
    let mut setup = Setup::new(v);
    let setup_result = (|| -> Result<(), KernelError> {
        let main_interface = || o.main_interface.clone();
        setup.apply(NetOp::AddrAdd(Addr {
            ip: my_ip.into(),
            len: subnet.len(),
            dev: main_interface(),
        }))?;
        setup.apply(NetOp::RouteAdd(Route::unreachable(
            network.to_ipv6().into(),
            network.len(),
            PROTO_BOOT,
        )))?;
        if let Some((p, (ip4, len))) = ipv4 {
            setup.apply(NetOp::RouteAdd(Route::unreachable(
                p.network.into(),
                p.prefix_len,
                PROTO_STATIC,
            )))?;
            if client_mode.is_some() {
                // No tap of ours carries the address: the main interface
                // does, and babel announces the subnet from a route.
                setup.apply(NetOp::AddrAdd(Addr {
                    ip: ip4.into(),
                    len: 32,
                    dev: main_interface(),
                }))?;
                setup.apply(NetOp::RouteAdd(Route::unreachable(
                    ipv4_network(ip4, len).into(),
                    len,
                    PROTO_STATIC,
                )))?;
            }
        }
        // Server taps too: they then outlive an OpenVPN server restart,
        // and babeld keeps its interface.
        let server_taps = servers.iter().map(|(_, proto)| format!("re6stnet-{proto}"));
        let client_taps = (1..=taps).map(|i| format!("re6stnet{i}"));
        for t in server_taps.chain(client_taps) {
            setup.apply(NetOp::TapAdd(t.clone()))?;
            setup.apply(NetOp::LinkUp { dev: t, mtu: None })?;
        }
        Ok(())
    })();
    let result = match setup_result {
        Ok(()) => {
            let (done, done_rx) = mpsc::unbounded_channel();
            let (babel_commands, babel_rx) = mpsc::unbounded_channel();
            run_node(
                o.clone(),
                Node {
                    o: o.clone(),
                    network,
                    prefix,
                    link: PeerLink {
                        me: Identity::new(ca.clone(), my_cert.clone(), key.clone())
                            .map_err(|e| e.to_string())?,
                        peers: PeerTable::default(),
                        crl: config.crl.clone(),
                        my_address,
                        version: config.version.clone(),
                        info: format!("re6st-rs {}", env!("CARGO_PKG_VERSION")),
                        pending: Default::default(),
                        random: random_bytes,
                    },
                    core: NodeCore::new(
                        {
                            let cache_path = o.state.join("peers.bin");
                            let (mut cache, err) = peers_file::load(&cache_path, DEFAULT_CAPACITY);
                            if let Some(e) = err {
                                log(1, v, e);
                            }
                            cache.reset_connecting();
                            let neighbours = o
                                .neighbours
                                .iter()
                                .filter_map(|n| Prefix::from_subnet(n).ok())
                                .collect();
                            Manager::new(
                                Config {
                                    me: prefix,
                                    registry: config.registry_prefix,
                                    client_count,
                                    tunnel_refresh: i64::from(config.tunnel_refresh),
                                    timeout,
                                    neighbours,
                                    disabled: disabled.iter().copied().collect(),
                                    countries: CountryRule {
                                        same_country: config.same_country.iter().cloned().collect(),
                                        mine: country.clone(),
                                    },
                                },
                                cache,
                                mono(),
                                u64::from(openssl_random()),
                            )
                        },
                        config.clone(),
                        own_serial,
                        clock(),
                    ),
                    status_dumps: 0,
                    // Stock babeld's text socket; RUN/babeld.sock speaks upstream's
                    // protocol (see babel::upstream_ctl).
                    babel_socket: o.run.join("babeld-stock.sock"),
                    common,
                    clients: BTreeMap::new(),
                    registry: Arc::new(tokio::sync::Mutex::new(registry)),
                    done,
                    babel_commands,
                    forward_to: None,
                    client_count: taps,
                    cert_not_after,
                    my_ip,
                    ca: ca.clone(),
                    my_cert: my_cert.clone(),
                    key: key.clone(),
                    client_mode,
                    client_mode_child: None,
                    advertised,
                    ipv4: ipv4.map(|(_, a)| a),
                    remote_gateways,
                    country: country.clone(),
                    tunnel_peers: BTreeMap::new(),
                    kernel_check: KernelCheck::default(),
                    server_ifaces: Vec::new(),
                },
                &config,
                &dh,
                servers,
                max_clients,
                my_ip,
                subnet.len(),
                hook_sock,
                Inbox {
                    done: done_rx,
                    babel_commands: babel_rx,
                },
            )
            .await
        }
        Err(e) => Err(e.to_string().into()),
    };
    drop(setup);
    result
}

/// A `--remote-gateway` must be on a directly connected network (as for
/// any route's gateway): else every tunnel's route through it would fail.
fn check_on_link(gw: &str) -> Result<(), String> {
    let ip: std::net::Ipv4Addr = gw
        .parse()
        .map_err(|_| format!("--remote-gateway {gw:?}: not an IPv4 address"))?;
    let route = Netlink::open()
        .and_then(|mut nl| nl.route_to(ip.into()))
        .map_err(|e| format!("--remote-gateway {gw}: unreachable ({e})"))?;
    if route.via.is_some() {
        return Err(format!(
            "--remote-gateway {gw}: not on a directly connected network (the kernel \
             routes it {route})"
        ));
    }
    Ok(())
}

/// Our country: `--country`, else, when the network keeps some countries'
/// tunnels at home (`same_country`), what the registry's GeoIP says of our
/// first fixed IPv4 address.
async fn our_country(
    o: &Options,
    config: &NetworkConfig,
    registry: &mut RegistryClient,
) -> Option<String> {
    if o.country.is_some() || config.same_country.is_empty() {
        return o.country.clone();
    }
    let ip =
        o.ip.iter()
            .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())?;
    match registry.country(ip).await {
        Ok(Some(c)) if c != "*" => {
            log(2, o.verbose, format!("country of {ip}: {c}"));
            Some(c)
        }
        r => {
            log(
                1,
                o.verbose,
                format!("country of {ip} unknown ({r:?}): same_country not applied"),
            );
            None
        }
    }
}

fn ipv4_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// The network address of `ip`'s `/len` subnet.
fn ipv4_network(ip: std::net::Ipv4Addr, len: u8) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(ip) & ipv4_mask(len))
}

fn openssl_random() -> u32 {
    let mut b = [0u8; 4];
    let _ = openssl::rand::rand_bytes(&mut b);
    u32::from_be_bytes(b)
}

#[allow(clippy::too_many_arguments)]
async fn run_node(
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
    } = inbox;
    tokio::spawn(send_babel_commands(
        node.babel_socket.clone(),
        babel_commands,
    ));
    let v = o.verbose;
    let server_ifaces: Vec<String> = servers
        .iter()
        .map(|(_, proto)| format!("re6stnet-{proto}"))
        .collect();
    node.server_ifaces = server_ifaces.clone();
    let spawn_servers = |common: &Common, max_clients: u32| -> Result<Vec<Child>, String> {
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
                    .map_err(|e| format!("openvpn: {e}"))?,
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
    let mut babeld = Some(spawn_babel(&babel).map_err(|e| format!("babeld: {e}"))?);
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
    let hook =
        UnixDatagram::bind(&hook_sock).map_err(|e| format!("{}: {e}", hook_sock.display()))?;
    let udp = UdpSocket::bind(bind_address())
        .await
        .map_err(|e| format!("UDP port 326: {e}"))?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| e.to_string())?;
    // Upstream's --up and --daemon: user commands once we are set up.
    if let Some(up) = &o.up {
        let status = Command::new("sh")
            .args(["-c", up])
            .status()
            .await
            .map_err(|e| format!("--up: {e}"))?;
        if !status.success() {
            return Err(format!("--up command failed ({status})").into());
        }
    }
    let mut daemons = Vec::new();
    for cmd in &o.daemon {
        daemons.push(
            super::child::command("sh")
                .args(["-c", cmd])
                .spawn()
                .map_err(|e| format!("--daemon {cmd:?}: {e}"))?,
        );
    }
    let ctl_path = o.run.join(crate::status::ctl::SOCKET);
    let _ = std::fs::remove_file(&ctl_path);
    let ctl = tokio::net::UnixListener::bind(&ctl_path)
        .map_err(|e| format!("{}: {e}", ctl_path.display()))?;
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
                    let datagram = buf[..n].to_vec();
                    node.datagram(&udp, from, &datagram).await;
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
                        babeld = Some(spawn_babel(&babel).map_err(|e| format!("babeld: {e}"))?);
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
    node.save_cache();
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
struct Inbox {
    done: mpsc::UnboundedReceiver<Done>,
    babel_commands: mpsc::UnboundedReceiver<Vec<String>>,
}

/// At most this many `re6st ctl status` dumps at a time.
const STATUS_DUMPS: usize = 4;
/// How long `re6st ctl status` waits for a fresh dump of babeld's routes
/// before it answers with the tunnel manager's view.
const STATUS_DUMP_WAIT: Duration = Duration::from_millis(500);

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

/// How long a starting node waits for a previous one on the same run
/// directory to finish its clean-up (a quick restart) before giving up.
const INSTANCE_WAIT: Duration = Duration::from_secs(30);

/// How long a revoked peer keeps its tunnel to our servers after we
/// announced the revoking version to it (see `Node::drop_served`).
const REVOKED_DROP_DELAY: Duration = Duration::from_secs(1);

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

/// Why the node's run ended other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A new network configuration or CA needs a fresh start: everything
    /// was cleaned up, the process starts over with its command line.
    #[error("the node must start over")]
    Restart,
    /// The node cannot run (what, and why).
    #[error("{0}")]
    Fatal(String),
}

impl From<String> for NodeError {
    fn from(why: String) -> NodeError {
        NodeError::Fatal(why)
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

impl Drop for Node {
    /// The routes to tunnel peers through `--remote-gateway`s go with the
    /// node, whatever way `run_node` returns.
    fn drop(&mut self) {
        kernel::apply_logged(&self.remote_gateways.clear(), self.o.verbose);
    }
}

impl Node {
    /// Gives the core an input, with the time now.
    fn handle(&mut self, input: Input) {
        self.core.handle(input, clock());
    }

    /// Carries out what the core decided (but starting babeld and
    /// answering hooks, which `run_node` does with what it holds).
    async fn carry_out(&mut self, effect: Effect, udp: &UdpSocket) {
        match effect {
            Effect::Log { level, message } => log(level, self.o.verbose, message),
            Effect::PeerSawUs(ip) => self.peer_saw(&ip),
            Effect::DumpBabel => self.request_dump(),
            Effect::AskBootstrap => {
                let (registry, done) = (self.registry.clone(), self.done.clone());
                tokio::spawn(async move {
                    let answer = registry.lock().await.bootstrap_peer().await;
                    let _ = done.send(Done::Bootstrap(answer));
                });
            }
            Effect::FetchConfig => self.fetch_config(),
            Effect::CheckRenewal => self.check_renewal(),
            Effect::AnnounceVersion => self.announce_version(udp).await,
            Effect::CompareKernelRoutes => self.check_kernel_routes(),
            Effect::SaveCache => self.save_cache(),
            Effect::UseNewCert => self.use_new_cert(),
            Effect::UseConfig(new) => self.use_config(&new),
            Effect::SendVersion(peer) => {
                let msg = version_message(&self.link.version);
                self.send_to(udp, peer, &msg).await;
            }
            Effect::SendToPeer { prefix, payload } => self.send_to(udp, prefix, &payload).await,
            Effect::TellBabel(lines) => self.tell_babel(&lines),
            Effect::ExchangeTables { iface, remove, add } => {
                let addr = |ip: std::net::Ipv4Addr| Addr {
                    ip: ip.into(),
                    len: 32,
                    dev: iface.clone(),
                };
                // The new one first: babeld then sees one change, not two.
                let mut ops = vec![NetOp::AddrAdd(addr(add))];
                ops.extend(remove.map(|r| NetOp::AddrDel(addr(r))));
                tokio::spawn(tasks::apply_all(ops, self.o.verbose));
            }
            Effect::StartTunnel {
                prefix,
                iface,
                address,
            } => self.start_tunnel(prefix, &iface, address),
            Effect::StopTunnel(prefix) => self.stop_tunnel(prefix),
            Effect::HoldRoutes { iface, hold: true } => handover::hold(&iface),
            Effect::HoldRoutes { iface, hold: false } => handover::release(&iface),
            Effect::MuteBabel { iface, mute } => {
                if let Err(e) = handover::mute(&iface, mute) {
                    let what = if mute { "silence" } else { "unsilence" };
                    log(
                        0,
                        self.o.verbose,
                        format!("{iface}: cannot {what} babel: {e}"),
                    );
                }
            }
            // Carried out by `run_node`, with the children it holds.
            Effect::StartBabeld
            | Effect::AnswerHook { .. }
            | Effect::CheckServers
            | Effect::RestartServers
            | Effect::RestartBabeld
            | Effect::DropServed(_)
            | Effect::Reexec => {}
        }
    }

    /// Writes the core's log lines, at the end (nothing else is carried
    /// out any more).
    fn flush_logs(&mut self) {
        while let Some(effect) = self.core.poll_effect() {
            if let Effect::Log { level, message } = effect {
                log(level, self.o.verbose, message);
            }
        }
    }

    /// Saves the peer cache (atomically: a failed write leaves the
    /// previous file); the core says what of it to log.
    fn save_cache(&mut self) {
        let saved = self.core.manager().cache();
        let saved =
            peers_file::save(saved, &self.o.state.join("peers.bin")).map_err(|e| e.to_string());
        self.handle(Input::CacheSaved(saved));
    }

    /// The tunnel to `prefix` no longer uses its peer address.
    fn forget_peer_route(&mut self, prefix: Prefix) {
        if let Some(ip) = self.tunnel_peers.remove(&prefix) {
            if let Some(op) = self.remote_gateways.remove(ip) {
                kernel::apply_logged(&[op], self.o.verbose);
            }
        }
    }

    /// New port mappings on the gateway (or none any more).
    fn set_mapping(&mut self, m: Option<Mapping>) {
        if self.advertised.set_mapping(m) {
            self.announce_change();
        }
    }

    /// A peer's server saw our client come from `ip`.
    fn peer_saw(&mut self, ip: &str) {
        if let Ok(ip) = ip.parse() {
            if self.advertised.peer_saw(ip) {
                self.announce_change();
            }
        }
    }

    fn announce_change(&mut self) {
        self.link.my_address = self.advertised.render();
        log(
            2,
            self.o.verbose,
            format!("our address for peers: {:?}", self.link.my_address),
        );
    }

    /// `--client`: keeps the one OpenVPN client running.
    fn client_mode_tunnel(&mut self) {
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

    /// Starts a renewal check (see [`tasks::renew`]).
    fn check_renewal(&mut self) {
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
    fn use_new_cert(&mut self) {
        match Identity::new(self.ca.clone(), self.my_cert.clone(), self.key.clone()) {
            Ok(me) => self.link.me = me,
            Err(e) => log(1, self.o.verbose, format!("new certificate: {e}")),
        }
        let serial = cert::serial(&self.my_cert)
            .ok()
            .and_then(|s| u64::try_from(s).ok());
        self.cert_not_after = renewal::unix(self.my_cert.not_after()).unwrap_or(0);
        // Killed but kept: reaping them tells the manager, which reconnects.
        for c in self.clients.values_mut() {
            let _ = c.start_kill();
        }
        if let Some(c) = self.client_mode_child.take() {
            tasks::kill_in_background(c);
        }
        self.reap_clients();
        self.handle(Input::NewCertificate { serial });
    }

    /// A peer's network version: newer ones make us fetch the
    /// configuration, older ones get ours back.
    fn on_version(&mut self, peer: Prefix, blob: Vec<u8>) {
        if blob == self.link.version {
            return;
        }
        let theirs = re6st_proto::crypto::verify_version(&self.ca, &blob).ok();
        let ours = re6st_proto::crypto::version_number(&self.link.version).unwrap_or(0);
        self.handle(Input::PeerVersion { peer, theirs, ours });
    }

    /// Starts fetching the network configuration (a newer one exists).
    fn fetch_config(&mut self) {
        let (registry, done) = (self.registry.clone(), self.done.clone());
        tokio::spawn(async move {
            let answer = registry.lock().await.network_config().await;
            let _ = done.send(Done::NetworkConfig(answer));
        });
    }

    /// Takes a newer network configuration into use: cached, its version
    /// and CRL for the peer protocol, its hello for OpenVPN's time-out.
    fn use_config(&mut self, new: &NetworkConfig) {
        if let Err(e) = netconfig_cache::save(&self.o.state.join("network-config.bin"), new) {
            log(
                1,
                self.o.verbose,
                format!("cannot cache the network configuration: {e}"),
            );
        }
        self.link.version = new.version.clone();
        self.link.crl = new.crl.clone();
        self.common.ping_exit = 4 * new.hello;
    }

    /// Drops the connections to our servers that use a certificate just
    /// revoked (`serials`), alone: the other clients keep their tunnels,
    /// and so does a new connection of the same node with a renewed
    /// certificate. In a task, through each server's management socket; a
    /// failure is reported on `failed` (the servers are then restarted).
    fn drop_served(&self, serials: &BTreeSet<u64>, failed: &tokio::sync::mpsc::Sender<String>) {
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

    /// Sends our network version to every tunnel neighbour: right after a
    /// change, then every 30 s, so that a neighbour that missed it (its
    /// tunnel was restarting) still gets it. Same versions cost nothing.
    async fn announce_version(&mut self, udp: &UdpSocket) {
        self.handle(Input::VersionAnnounced);
        let msg = [&[Code::Version as u8][..], &self.link.version].concat();
        let neighbours: BTreeSet<Prefix> = self
            .core
            .manager()
            .tunnels()
            .map(|(p, _)| *p)
            .chain(self.core.manager().served().iter().copied())
            .collect();
        for p in neighbours {
            self.send_to(udp, p, &msg).await;
        }
    }

    fn status(&self, fresh: Option<&RoutingView>) -> crate::status::NodeStatus {
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
            config_version: re6st_proto::crypto::version_number(&self.link.version).unwrap_or(0),
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
            reachable_at: self.link.my_address.clone(),
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

    async fn send_to(&mut self, udp: &UdpSocket, prefix: Prefix, payload: &[u8]) {
        for (to, d) in self.link.send(prefix, payload, now_us()) {
            let _ = udp.send_to(&d, to).await;
        }
    }

    async fn datagram(&mut self, udp: &UdpSocket, from: SocketAddr, datagram: &[u8]) {
        if from.ip().to_canonical().is_loopback() {
            // The registry's relay, if the registry sent it (see
            // relay_source); anything else from here is dropped.
            let our_uid = nix::unistd::geteuid().as_raw();
            if !super::relay_source::trusted(from, our_uid) {
                self.handle(Input::RelayRefused { from });
                return;
            }
            let Ok(r) = relay::decode(datagram) else {
                return;
            };
            self.forward_to = Some(from);
            if r.prefix == self.prefix {
                let payload = [&[r.code][..], r.payload].concat();
                if let Ok(m) = Message::decode(&payload) {
                    let (answer, _) = self.link.answer(false, &m);
                    if m.code == Code::Version {
                        // The registry has a new network configuration.
                        self.handle(Input::NewerConfigSeen);
                    }
                    if let Some(a) = answer {
                        let _ = udp
                            .send_to(&relay::encode(&r.prefix, r.code, &a), from)
                            .await;
                    } else if m.code == Code::Topology {
                        let text = self.core.topology();
                        let _ = udp
                            .send_to(&relay::encode(&r.prefix, r.code, text.as_bytes()), from)
                            .await;
                    }
                }
            } else {
                let payload = [&[r.code | re6st_proto::message::FORWARD][..], r.payload].concat();
                self.send_to(udp, r.prefix, &payload).await;
            }
            return;
        }
        let (out, event) = self.link.receive(from, datagram, now_us());
        for (to, d) in out {
            let _ = udp.send_to(&d, to).await;
        }
        match event {
            // Answers to requests the registry relayed through us.
            Some(PeerEvent::Forward(p, code, data)) => {
                if let Some(fwd) = self.forward_to {
                    let _ = udp.send_to(&relay::encode(&p, code, &data), fwd).await;
                }
            }
            Some(PeerEvent::Address(p, a)) => self.handle(Input::PeerAddress(p, a)),
            Some(PeerEvent::Kill(p, code)) => self.handle(Input::KillMessage(p, code)),
            Some(PeerEvent::Version(p, blob)) => self.on_version(p, blob),
            // Only for the registry's node, as upstream: the registry
            // explores the tunnel graph through it.
            Some(PeerEvent::Topology(peer, first)) => {
                self.handle(Input::TopologyAsked { peer, first })
            }
            None => {}
        }
    }

    fn hook_event(&mut self, data: &[u8], from: Option<&Path>) {
        let Ok(event) = Event::decode(data) else {
            return;
        };
        self.handle(Input::Hook {
            event,
            reply_to: from.map(Path::to_path_buf),
        });
    }

    fn reap_clients(&mut self) {
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
    fn start_tunnel(
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

    fn stop_tunnel(&mut self, prefix: Prefix) {
        if let Some(c) = self.clients.remove(&prefix) {
            tasks::kill_in_background(c);
        }
        self.forget_peer_route(prefix);
    }

    /// Sends configuration lines to babeld (in order, by a task).
    fn tell_babel(&self, lines: &[String]) {
        let _ = self.babel_commands.send(lines.to_vec());
    }

    /// The interfaces babeld was told about, for a babeld (re)started.
    fn babel_interfaces(&self) -> Vec<String> {
        self.core
            .babel_interfaces()
            .known()
            .iter()
            .cloned()
            .collect()
    }

    /// Starts comparing babeld's routes with the kernel's (see
    /// [`KernelCheck`]); [`Node::fix_kernel_routes`] gets the result.
    fn check_kernel_routes(&mut self) {
        let (source, done) = (self.view_source(), self.done.clone());
        tokio::spawn(async move {
            let _ = done.send(tasks::kernel_and_babel(source).await);
        });
    }

    /// Puts into the kernel the routes babeld believes installed and the
    /// kernel does not hold.
    fn fix_kernel_routes(&mut self, table: &Table, kernel: &BTreeMap<(Net, Net), KernelRoute>) {
        let (v6, v4) = (self.my_ip, self.ipv4.map(|(a, _)| a));
        let pref_src = move |dest: std::net::IpAddr| match dest {
            std::net::IpAddr::V6(_) => Some(std::net::IpAddr::V6(v6)),
            std::net::IpAddr::V4(_) => v4.map(std::net::IpAddr::V4),
        };
        let fixes = self.kernel_check.compare(table.routes(), kernel, &pref_src);
        for op in &fixes {
            log(
                1,
                self.o.verbose,
                format!("the kernel differs from babeld: {op}"),
            );
        }
        if !fixes.is_empty() {
            tokio::spawn(tasks::apply_all(fixes, self.o.verbose));
        }
    }

    fn view_source(&self) -> ViewSource {
        ViewSource {
            socket: self.babel_socket.clone(),
            network: self.network,
            me: self.prefix,
            lan: self.o.interfaces.clone(),
        }
    }

    /// Starts a dump for the tunnel manager.
    fn request_dump(&mut self) {
        let (source, done) = (self.view_source(), self.done.clone());
        tokio::spawn(async move {
            let _ = done.send(Done::Routes(source.view().await));
        });
    }

    /// Answers `re6st ctl status` on `stream`: with a fresh dump (the
    /// manager's view may be minutes old) when babeld gives one quickly,
    /// else with the manager's view. At most [`STATUS_DUMPS`] dumps at a
    /// time: more clients get the manager's view at once.
    fn answer_status(&mut self, stream: tokio::net::UnixStream) {
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
    fn write_status(&self, mut stream: tokio::net::UnixStream, view: Option<RoutingView>) {
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

    /// What a task reports, for the core (and the state it changes).
    fn on_done(&mut self, done: Done) {
        match done {
            Done::Routes(view) => self.handle(Input::Dumped(view)),
            Done::Status(stream, view) => {
                self.status_dumps -= 1;
                self.write_status(stream, view);
            }
            Done::Bootstrap(answer) => {
                self.handle(Input::Bootstrap(answer.map_err(|e| e.to_string())));
            }
            Done::NetworkConfig(answer) => self.handle(Input::ConfigFetched(
                answer.map(Box::new).map_err(|e| e.to_string()),
            )),
            Done::Renewal(r) => {
                self.handle(Input::RenewalDone {
                    retry_tomorrow: r.retry_tomorrow,
                });
                if let Some(cert) = r.cert {
                    self.my_cert = cert;
                }
                self.handle(Input::Renewed(match r.renewed {
                    Renewed::Ca => CoreRenewed::Ca,
                    Renewed::Cert => CoreRenewed::Cert,
                    Renewed::Nothing => CoreRenewed::Nothing,
                }));
            }
            Done::KernelRoutes(found) => {
                self.handle(Input::KernelRoutesCompared);
                if let Some((table, kernel)) = found {
                    self.fix_kernel_routes(&table, &kernel);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_clock_starts_at_the_wall_clock_and_never_goes_back() {
        let a = mono();
        assert!((a - now()).abs() <= 2, "{a} {}", now());
        let mut last = a;
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(400));
            let b = mono();
            assert!(b >= last);
            last = b;
        }
    }
}
