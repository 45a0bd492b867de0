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
use re6st_registry_client::client::{ClientError, RegistryClient};
use re6st_registry_client::transport::RegistryUrl;
use tokio::net::{UdpSocket, UnixDatagram};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::handover;
use super::log::{error, log};
use super::options::Options;
use super::peer_link::{bind_address, PeerEvent, PeerLink};
use super::reconfig;
use super::renewal;
use super::restart_backoff::RestartBackoff;
use super::tasks::{self, send_babel_commands, Done, Renewed, ViewSource};
use crate::babel::config::BabelConfig;
use crate::babel::control::set_rxcost;
use crate::babel::kernel_check::{KernelCheck, KernelRoute, Net};
use crate::babel::table::Table;
use crate::kernel::netlink::Netlink;
use crate::kernel::op::{PROTO_BOOT, PROTO_STATIC};
use crate::kernel::{self, Addr, KernelError, NetOp, Route, Setup};
use crate::nat::advertised::{Advertised, Mapping};
use crate::nat::upnp::Upnp;
use crate::openvpn::args::{client, server, Common};
use crate::openvpn::hook::Event;
use crate::openvpn::management;
use crate::state::{netconfig as netconfig_cache, peers::PeerCache, peers::DEFAULT_CAPACITY};
use crate::tunnel::manager::{Action, Config, CountryRule, Manager, RoutingView};
use crate::underlay::RemoteGateways;

/// Wall-clock seconds: for what is about dates (certificates, renewal,
/// the peer protocol's certificate checks).
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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

struct Node {
    o: Options,
    network: Prefix,
    prefix: Prefix,
    link: PeerLink,
    manager: Manager,
    babel_socket: PathBuf,
    common: Common,
    clients: BTreeMap<Prefix, Child>,
    /// Shared with the tasks that call the registry (one call at a time).
    registry: Arc<tokio::sync::Mutex<RegistryClient>>,
    /// Where tasks report what they did (the loop's only other input).
    done: mpsc::UnboundedSender<Done>,
    /// Lines for babeld, sent in order by one task.
    babel_commands: mpsc::UnboundedSender<Vec<String>>,
    /// Slow work under way, each at most once at a time.
    in_flight: InFlight,
    forward_to: Option<SocketAddr>,
    defaults: String,
    client_count: usize,
    /// For the status command.
    cert_not_after: i64,
    my_ip: std::net::Ipv6Addr,
    ca: X509,
    /// The network configuration in use.
    config: NetworkConfig,
    own_serial: u64,
    /// Serials of the peers on our servers.
    served_serials: BTreeMap<Prefix, u64>,
    /// The connections on our servers and their certificates.
    served_links: management::Connections,
    /// Our OpenVPN servers' interfaces (their management sockets are named
    /// after them).
    server_ifaces: Vec<String>,
    /// When to fetch the network configuration (a newer version exists).
    update_at: Option<i64>,
    /// When we last sent our version to our neighbours.
    version_announced: i64,
    my_cert: X509,
    key: PKey<openssl::pkey::Private>,
    /// When to check our certificate's and the CA's ends next.
    renewal_check: i64,
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
    /// Interfaces babeld was told about (its command line, then taps
    /// taken into use later): a restarted babeld gets them all.
    babel_ifaces: BTreeSet<String>,
    kernel_check: KernelCheck,
    kernel_checked: i64,
    /// Bootstrap requests in a row that gave no peer.
    bootstrap_misses: u32,
    /// Relay datagrams refused (logged at powers of two).
    relay_refused: u64,
    /// babeld and OpenVPN processes that exited on their own (status).
    babeld_restarts: u64,
    openvpn_restarts: u64,
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
                    },
                    manager: {
                        let cache_path = o.state.join("peers.bin");
                        let (mut cache, err) = PeerCache::load(&cache_path, DEFAULT_CAPACITY);
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
                    // Stock babeld's text socket; RUN/babeld.sock speaks upstream's
                    // protocol (see babel::upstream_ctl).
                    babel_socket: o.run.join("babeld-stock.sock"),
                    common,
                    clients: BTreeMap::new(),
                    registry: Arc::new(tokio::sync::Mutex::new(registry)),
                    done,
                    babel_commands,
                    in_flight: InFlight::default(),
                    forward_to: None,
                    defaults: String::new(),
                    client_count: taps,
                    cert_not_after,
                    my_ip,
                    ca: ca.clone(),
                    config: config.clone(),
                    own_serial,
                    served_serials: BTreeMap::new(),
                    served_links: Default::default(),
                    update_at: None,
                    version_announced: mono(),
                    my_cert: my_cert.clone(),
                    key: key.clone(),
                    renewal_check: now() + 10,
                    client_mode,
                    client_mode_child: None,
                    advertised,
                    ipv4: ipv4.map(|(_, a)| a),
                    remote_gateways,
                    country: country.clone(),
                    tunnel_peers: BTreeMap::new(),
                    babel_ifaces: BTreeSet::new(),
                    kernel_check: KernelCheck::default(),
                    kernel_checked: 0,
                    bootstrap_misses: 0,
                    relay_refused: 0,
                    server_ifaces: Vec::new(),
                    babeld_restarts: 0,
                    openvpn_restarts: 0,
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
    node.defaults = babel.interface_defaults();
    node.babel_ifaces = babel.interfaces.iter().cloned().collect();
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
        .config
        .registry_prefix
        .and_then(|p| node.network.concat(&p).ok())
        .map(|s| (std::net::IpAddr::V6(s.to_ipv6()), s.len()))
        .into_iter()
        .collect();
    let mut babel_links = crate::babel::monitor::spawn(node.babel_socket.clone(), watched);
    // Revoked peers that a server could not drop alone.
    let (dropped_tx, mut dropped_rx) = tokio::sync::mpsc::channel::<String>(4);
    let mut force_server_restart = false;
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
    let mut babel_backoff = RestartBackoff::new(mono() as u64);
    // When the servers were last (re)started: one that exits is restarted
    // with the others, at most once every SERVER_RESTART_EVERY.
    let mut servers_started = std::time::Instant::now();
    let mut cache_saved = mono();
    let mut cache_save_failed = false;
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
    // babeld's restart after it exited, once its back-off has passed: a
    // timer of the loop, never a sleep inside it.
    let mut babel_restart_at: Option<tokio::time::Instant> = None;
    loop {
        // What the event asked for, carried out below.
        let mut asked = Asked::default();
        tokio::select! {
            _ = sigterm.recv() => break,
            Some(m) = mapping_changed(&mut mapping) => node.set_mapping(m),
            Some(()) = babel_links.recv() => node.manager.on_routing_changed(),
            Some(failed) = dropped_rx.recv() => {
                // Without its management socket, a server drops a revoked
                // peer only by restarting (every other client with it).
                log(1, v, format!("could not drop a revoked peer: {failed}; restarting the OpenVPN servers"));
                force_server_restart = true;
            }
            _ = sigint.recv() => break,
            status = wait_child(&mut babeld) => {
                babeld = None;
                let delay = babel_backoff.on_exit(mono() as u64);
                log(1, v, format!("babeld exited ({status:?}); restarting in {delay}s"));
                babel_restart_at = Some(tokio::time::Instant::now() + Duration::from_secs(delay));
            }
            _ = sleep_until(babel_restart_at) => {
                babel_restart_at = None;
                babel.interfaces = node.babel_ifaces.iter().cloned().collect();
                match spawn_babel(&babel) {
                    Ok(c) => {
                        babeld = Some(c);
                        babel_backoff.on_start(mono() as u64);
                        node.babeld_restarts += 1;
                        log(1, v, "babeld restarted");
                    }
                    Err(e) => {
                        let delay = babel_backoff.on_start_failed(mono() as u64);
                        log(0, v, format!("babeld: {e}; trying again in {delay}s"));
                        babel_restart_at =
                            Some(tokio::time::Instant::now() + Duration::from_secs(delay));
                    }
                }
            }
            r = ctl.accept() => {
                if let Ok((stream, _)) = r {
                    node.answer_status(stream);
                }
            }
            Some(d) = done_rx.recv() => node.on_done(d, &udp, &mut asked).await,
            r = hook.recv_from(&mut hook_buf) => {
                if let Ok((n, from)) = r {
                    node.hook_event(&hook, &hook_buf[..n], from.as_pathname()).await;
                }
            }
            r = udp.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    let datagram = buf[..n].to_vec();
                    node.datagram(&udp, from, &datagram).await;
                }
            }
            _ = tick.tick() => {
                asked.restart_servers |= std::mem::take(&mut force_server_restart);
                if node.update_at.is_some_and(|t| mono() >= t) {
                    node.fetch_config();
                }
                if now() >= node.renewal_check {
                    node.check_renewal();
                }
                // An OpenVPN server that exited (killed, crashed): its
                // peers lost their tunnels; serve them again.
                if servers_started.elapsed() >= SERVER_RESTART_EVERY {
                    for (c, iface) in children.iter_mut().zip(&server_ifaces) {
                        if let Ok(Some(status)) = c.try_wait() {
                            log(1, v, format!("OpenVPN server {iface} exited ({status})"));
                            node.openvpn_restarts += 1;
                            asked.restart_servers = true;
                        }
                    }
                }
                if mono() - node.version_announced >= 30 {
                    node.announce_version(&udp).await;
                }
                if mono() - node.kernel_checked >= KERNEL_CHECK_EVERY {
                    node.kernel_checked = mono();
                    node.check_kernel_routes();
                }
                node.client_mode_tunnel();
                node.reap_clients();
                node.manager.tick(mono());
                node.run_actions(&udp).await;
                if mono() - cache_saved > 60 {
                    save_cache(&node, &o.state, &mut cache_save_failed);
                    cache_saved = mono();
                }
            }
        }
        if asked.reexec {
            reexec = true;
            break;
        }
        if asked.restart_babel {
            log(1, v, "network configuration changed: restarting babeld");
            babel.hello = node.config.hello;
            babel.default = node.config.babel_default.clone();
            babel.hmac_sign = node
                .config
                .babel_hmac_sign
                .clone()
                .filter(|k| !k.is_empty());
            babel.hmac_accept = node.config.babel_hmac_accept.clone();
            node.defaults = babel.interface_defaults();
            babel.interfaces = node.babel_ifaces.iter().cloned().collect();
            // A babeld waiting for its restart takes the new parameters
            // then. A running one is killed, not stopped: its routes stay
            // in the kernel and carry traffic until the new babeld has
            // converged (tens of seconds).
            if let Some(mut old) = babeld.take() {
                let _ = old.kill().await;
                babeld = Some(spawn_babel(&babel).map_err(|e| format!("babeld: {e}"))?);
                babel_backoff.on_start(mono() as u64);
            }
        }
        if !asked.drop_served.is_empty() {
            node.drop_served(&asked.drop_served, &dropped_tx);
        }
        if asked.restart_servers {
            log(1, v, "restarting the OpenVPN servers");
            servers_started = std::time::Instant::now();
            // SIGKILL: gone at once, their ports free for the new ones.
            for mut c in std::mem::take(&mut children) {
                let _ = c.kill().await;
            }
            node.served_serials.clear();
            node.served_links.clear();
            node.manager.clear_served();
            let max = o.max_clients.unwrap_or(node.config.max_clients);
            children = spawn_servers(&node.common, max)?;
            for iface in &server_ifaces {
                node.reset_babel_iface(iface);
            }
        }
    }
    log(2, v, "stopping");
    if let Some(u) = upnp {
        u.stop().await;
    }
    save_cache(&node, &o.state, &mut cache_save_failed);
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

/// Slow work under way in a task: at most one of each at a time (the
/// tunnel manager and the timers ask again later), and a bounded number of
/// status dumps.
#[derive(Default)]
struct InFlight {
    dump: bool,
    bootstrap: bool,
    config: bool,
    renewal: bool,
    kernel_check: bool,
    status_dumps: usize,
}

/// Serials of the peers on our servers, at most (OpenVPN's --max-clients
/// bounds the real ones; hook events beyond are not remembered: the CRL
/// check then does not restart the servers for them).
const MAX_SERVED_SERIALS: usize = 1024;

/// At most this many `re6st ctl status` dumps at a time.
const STATUS_DUMPS: usize = 4;
/// How long `re6st ctl status` waits for a fresh dump of babeld's routes
/// before it answers with the tunnel manager's view.
const STATUS_DUMP_WAIT: Duration = Duration::from_millis(500);

/// What an event asked the loop to restart.
#[derive(Default)]
struct Asked {
    reexec: bool,
    restart_babel: bool,
    restart_servers: bool,
    /// Serials of revoked peers our servers must drop.
    drop_served: BTreeSet<u64>,
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

/// How long a starting node waits for a previous one on the same run
/// directory to finish its clean-up (a quick restart) before giving up.
const INSTANCE_WAIT: Duration = Duration::from_secs(30);

/// At most one restart of exited OpenVPN servers in this time.
const SERVER_RESTART_EVERY: Duration = Duration::from_secs(10);

/// How long a revoked peer keeps its tunnel to our servers after we
/// announced the revoking version to it (see `Node::drop_served`).
const REVOKED_DROP_DELAY: Duration = Duration::from_secs(1);

/// Saves the peer cache (atomically: a failed write leaves the previous
/// file). A failure (e.g. a full disk) is logged, and so is the first
/// success after failures; the node goes on routing either way.
fn save_cache(node: &Node, state: &Path, failed: &mut bool) {
    match node.manager.cache().save(&state.join("peers.bin")) {
        Ok(()) => {
            if std::mem::take(failed) {
                log(1, node.o.verbose, "peer cache saved again");
            }
        }
        Err(e) => {
            log(
                1,
                node.o.verbose,
                format!("cannot save the state: {e} (the previous file is kept)"),
            );
            *failed = true;
        }
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

/// Seconds between two comparisons of babeld's routes with the kernel's.
const KERNEL_CHECK_EVERY: i64 = 10;

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

    /// Starts a renewal check (see [`tasks::renew`]); checked hourly, a
    /// failed attempt is retried then too.
    fn check_renewal(&mut self) {
        self.renewal_check = now() + 3600;
        if std::mem::replace(&mut self.in_flight.renewal, true) {
            return;
        }
        let input = tasks::RenewalInput {
            registry: self.registry.clone(),
            ca: self.ca.clone(),
            ca_path: self.o.ca.clone(),
            cert: self.my_cert.clone(),
            cert_path: self.o.cert.clone(),
            key: self.key.clone(),
            revoked: self.config.crl.contains(&self.own_serial),
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
        self.own_serial = cert::serial(&self.my_cert)
            .ok()
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(self.own_serial);
        self.cert_not_after = renewal::unix(self.my_cert.not_after()).unwrap_or(0);
        // Killed but kept: reaping them tells the manager, which reconnects.
        for c in self.clients.values_mut() {
            let _ = c.start_kill();
        }
        if let Some(c) = self.client_mode_child.take() {
            tasks::kill_in_background(c);
        }
        self.reap_clients();
        self.manager.on_new_certificate();
    }

    /// A peer's network version: newer ones make us fetch the
    /// configuration, older ones get ours back.
    async fn on_version(&mut self, udp: &UdpSocket, peer: Prefix, blob: Vec<u8>) {
        if blob == self.link.version {
            return;
        }
        let Ok(theirs) = re6st_proto::crypto::verify_version(&self.ca, &blob) else {
            log(
                2,
                self.o.verbose,
                format!("bad network version from {}", peer.to_subnet()),
            );
            return;
        };
        let ours = re6st_proto::crypto::version_number(&self.link.version).unwrap_or(0);
        log(
            3,
            self.o.verbose,
            format!(
                "network version {theirs} from {} (ours {ours})",
                peer.to_subnet()
            ),
        );
        if theirs < ours {
            let msg = [&[Code::Version as u8][..], &self.link.version].concat();
            self.send_to(udp, peer, &msg).await;
        } else if theirs > ours {
            self.update_at.get_or_insert(mono() + 1);
        }
    }

    /// Starts fetching the network configuration (a newer one exists).
    fn fetch_config(&mut self) {
        if std::mem::replace(&mut self.in_flight.config, true) {
            return;
        }
        let (registry, done) = (self.registry.clone(), self.done.clone());
        tokio::spawn(async move {
            let answer = registry.lock().await.network_config().await;
            let _ = done.send(Done::NetworkConfig(answer));
        });
    }

    /// The registry's network configuration: when it is newer, switches to
    /// it, tells our neighbours and says what else must restart.
    async fn update_config(
        &mut self,
        udp: &UdpSocket,
        answer: Result<NetworkConfig, ClientError>,
    ) -> Option<reconfig::Plan> {
        let new = match answer {
            Ok(c) => c,
            Err(e) => {
                log(
                    1,
                    self.o.verbose,
                    format!("new network configuration: {e}; retrying in 60s"),
                );
                self.update_at = Some(mono() + 60);
                return None;
            }
        };
        self.update_at = None;
        let number =
            |c: &NetworkConfig| re6st_proto::crypto::version_number(&c.version).unwrap_or(0);
        if number(&new) <= number(&self.config) {
            log(
                3,
                self.o.verbose,
                format!("registry's network version {} is not newer", number(&new)),
            );
            return None;
        }
        let served: BTreeSet<u64> = self.served_serials.values().copied().collect();
        let plan = reconfig::plan(
            &self.config,
            &new,
            &served,
            self.own_serial,
            re6st_proto::PROTOCOL,
        );
        log(
            2,
            self.o.verbose,
            format!("network configuration version {}: {plan:?}", number(&new)),
        );
        if let Err(e) = netconfig_cache::save(&self.o.state.join("network-config.bin"), &new) {
            log(
                1,
                self.o.verbose,
                format!("cannot cache the network configuration: {e}"),
            );
        }
        self.link.version = new.version.clone();
        self.link.crl = new.crl.clone();
        self.manager.on_crl(new.crl.clone());
        self.manager
            .set_tunnel_refresh(i64::from(new.tunnel_refresh));
        self.common.ping_exit = 4 * new.hello;
        self.config = new;
        // Tell our neighbours (they tell theirs).
        self.announce_version(udp).await;
        Some(plan)
    }

    /// Drops the connections to our servers that use a certificate just
    /// revoked (`serials`), alone: the other clients keep their tunnels,
    /// and so does a new connection of the same node with a renewed
    /// certificate. In a task, through each server's management socket; a
    /// failure is reported on `failed` (the servers are then restarted).
    fn drop_served(&self, serials: &BTreeSet<u64>, failed: &tokio::sync::mpsc::Sender<String>) {
        let targets = self.served_links.using(serials);
        if targets.is_empty() {
            return;
        }
        let run = self.o.run.clone();
        let (v, failed) = (self.o.verbose, failed.clone());
        let (babel, defaults) = (self.babel_commands.clone(), self.defaults.clone());
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
                        // babeld would keep routing through the dropped
                        // peer on this shared tap until it misses its
                        // hellos (over 30 s seen in the revocation test
                        // for the renewed node's routes): it forgets the
                        // tap's neighbours and relearns the others at
                        // their next hello. Their tunnels stay.
                        if n > 0 {
                            let _ = babel.send(vec![
                                format!("flush interface {iface}"),
                                format!("interface {iface} {defaults}"),
                            ]);
                        }
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
        self.version_announced = mono();
        let msg = [&[Code::Version as u8][..], &self.link.version].concat();
        let neighbours: BTreeSet<Prefix> = self
            .manager
            .tunnels()
            .map(|(p, _)| *p)
            .chain(self.manager.served().iter().copied())
            .collect();
        for p in neighbours {
            self.send_to(udp, p, &msg).await;
        }
    }

    fn status(&self, fresh: Option<&RoutingView>) -> crate::status::NodeStatus {
        let view = fresh.unwrap_or(self.manager.routing());
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
            registry_cut: self.manager.is_disconnected(),
            cached_peers: self.manager.cache().len(),
            known_nodes: view.known.len(),
            tunnels: self
                .manager
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
            served: self.manager.served().iter().map(subnet).collect(),
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
            same_country: self.config.same_country.clone(),
            babeld_restarts: self.babeld_restarts,
            openvpn_restarts: self.openvpn_restarts,
            // Added by `re6st ctl`, which runs on the host.
            system: None,
        }
    }

    /// Our answer to `topology`: the number of our client tunnels, then
    /// their peers and those we serve (`N p1 p2...`, as upstream).
    fn topology(&self) -> String {
        let tunnels: Vec<String> = self.manager.tunnels().map(|(p, _)| p.to_subnet()).collect();
        let served = self.manager.served().iter().map(|p| p.to_subnet());
        let mut text = tunnels.len().to_string();
        for s in tunnels.iter().cloned().chain(served) {
            text += " ";
            text += &s;
        }
        text
    }

    async fn send_to(&mut self, udp: &UdpSocket, prefix: Prefix, payload: &[u8]) {
        for (to, d) in self.link.send(prefix, payload, now()) {
            let _ = udp.send_to(&d, to).await;
        }
    }

    async fn datagram(&mut self, udp: &UdpSocket, from: SocketAddr, datagram: &[u8]) {
        if from.ip().to_canonical().is_loopback() {
            // The registry's relay, if the registry sent it (see
            // relay_source); anything else from here is dropped.
            let our_uid = nix::unistd::geteuid().as_raw();
            if !super::relay_source::trusted(from, our_uid) {
                self.relay_refused = self.relay_refused.saturating_add(1);
                if self.relay_refused.is_power_of_two() {
                    log(
                        1,
                        self.o.verbose,
                        format!(
                            "relay datagram from {from} ignored: not from root's or our \
                             user's socket ({} so far)",
                            self.relay_refused
                        ),
                    );
                }
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
                        self.update_at.get_or_insert(mono() + 1);
                    }
                    if let Some(a) = answer {
                        let _ = udp
                            .send_to(&relay::encode(&r.prefix, r.code, &a), from)
                            .await;
                    } else if m.code == Code::Topology {
                        let text = self.topology();
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
        let (out, event) = self.link.receive(from, datagram, now());
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
            Some(PeerEvent::Address(p, a)) => self.manager.on_address(p, &a),
            Some(PeerEvent::Kill(p, code)) => self.manager.on_kill_message(mono(), p, code),
            Some(PeerEvent::Version(p, blob)) => self.on_version(udp, p, blob).await,
            // Only for the registry's node, as upstream: the registry
            // explores the tunnel graph through it.
            Some(PeerEvent::Topology(p, first)) if Some(p) == self.config.registry_prefix => {
                let answer = [&[first][..], self.topology().as_bytes()].concat();
                self.send_to(udp, p, &answer).await;
            }
            Some(PeerEvent::Topology(..)) | None => {}
        }
        self.run_actions(udp).await;
    }

    async fn hook_event(&mut self, hook: &UnixDatagram, data: &[u8], from: Option<&Path>) {
        let Ok(event) = Event::decode(data) else {
            return;
        };
        match event {
            Event::ClientConnect(p) => {
                let ok = !self.link.crl.contains(&p.serial);
                if let Some(from) = from {
                    let _ = hook.send_to(&[u8::from(ok)], from).await;
                }
                if let (true, Ok(prefix)) = (ok, Prefix::from_subnet(&p.cn)) {
                    self.manager.on_served(prefix, true);
                    if self.served_serials.len() < MAX_SERVED_SERIALS
                        || self.served_serials.contains_key(&prefix)
                    {
                        self.served_serials.insert(prefix, p.serial);
                    }
                    self.served_links.connected(&p.dev, &p.ip, p.port, p.serial);
                }
            }
            Event::ClientDisconnect(p) => {
                self.served_links.disconnected(&p.dev, &p.ip, p.port);
                if let Ok(prefix) = Prefix::from_subnet(&p.cn) {
                    self.manager.on_served(prefix, false);
                    // Else a later CRL naming its serial would restart our
                    // servers for a peer long gone.
                    self.served_serials.remove(&prefix);
                }
            }
            Event::RouteUp {
                cn,
                serial,
                external_ip,
            } => {
                if let Ok(prefix) = Prefix::from_subnet(&cn) {
                    self.manager.on_tunnel_up(prefix, serial);
                }
                self.peer_saw(&external_ip);
            }
        }
    }

    fn reap_clients(&mut self) {
        let exited: Vec<Prefix> = self
            .clients
            .iter_mut()
            .filter_map(|(p, c)| matches!(c.try_wait(), Ok(Some(_))).then_some(*p))
            .collect();
        for p in exited {
            self.openvpn_restarts += 1;
            self.clients.remove(&p);
            self.manager.on_tunnel_exit(p);
        }
    }

    async fn run_actions(&mut self, udp: &UdpSocket) {
        while let Some(a) = self.manager.poll_action() {
            match a {
                Action::RequestDump => self.request_dump(),
                Action::Open {
                    prefix,
                    iface,
                    address,
                } => {
                    log(
                        2,
                        self.o.verbose,
                        format!(
                            "tunnel to {} via {iface}: trying {address}",
                            prefix.to_subnet()
                        ),
                    );
                    if let Some(old) = self.clients.remove(&prefix) {
                        tasks::kill_in_background(old);
                    }
                    self.forget_peer_route(prefix);
                    if self.babel_ifaces.insert(iface.clone()) {
                        let line = format!("interface {iface} {}", self.defaults);
                        self.tell_babel(&[line]);
                    }
                    if let Some(op) = self.remote_gateways.add(address.ip) {
                        kernel::apply_logged(&[op], self.o.verbose);
                    }
                    self.tunnel_peers.insert(prefix, address.ip);
                    let args = client(
                        &self.common,
                        &iface,
                        &prefix.to_subnet(),
                        &[(address.ip.to_string(), address.port, address.proto)],
                    );
                    match super::child::command("openvpn").args(&args).spawn() {
                        Ok(c) => {
                            self.clients.insert(prefix, c);
                        }
                        Err(e) => {
                            log(1, self.o.verbose, format!("openvpn: {e}"));
                            self.manager.on_tunnel_exit(prefix);
                        }
                    }
                }
                Action::Close { prefix, iface } => {
                    log(
                        2,
                        self.o.verbose,
                        format!("tunnel to {} via {iface}: closed", prefix.to_subnet()),
                    );
                    if let Some(c) = self.clients.remove(&prefix) {
                        tasks::kill_in_background(c);
                    }
                    self.forget_peer_route(prefix);
                }
                Action::QueryAddress(p) => self.send_to(udp, p, &[Code::Address as u8]).await,
                Action::SendKill { prefix, code } => {
                    let what = if code == 2 {
                        "asking to close"
                    } else {
                        "agreeing to close"
                    };
                    log(
                        2,
                        self.o.verbose,
                        format!("tunnel with {}: {what}", prefix.to_subnet()),
                    );
                    self.send_to(udp, prefix, &[code]).await
                }
                Action::SetRxCost { iface, rxcost } => {
                    if rxcost.is_some() {
                        log(2, self.o.verbose, format!("draining {iface}"));
                        handover::hold(&iface);
                    } else {
                        handover::release(&iface);
                    }
                    match rxcost {
                        Some(cost) => {
                            let lines = set_rxcost(&iface, cost, &self.defaults);
                            self.tell_babel(&lines);
                        }
                        None => self.reset_babel_iface(&iface),
                    }
                }
                Action::CheckConfig => {
                    self.update_at.get_or_insert(mono());
                }
                Action::RequestBootstrap => {
                    if !std::mem::replace(&mut self.in_flight.bootstrap, true) {
                        let (registry, done) = (self.registry.clone(), self.done.clone());
                        tokio::spawn(async move {
                            let answer = registry.lock().await.bootstrap_peer().await;
                            let _ = done.send(Done::Bootstrap(answer));
                        });
                    }
                }
            }
        }
    }

    /// Sends configuration lines to babeld (in order, by a task).
    fn tell_babel(&self, lines: &[String]) {
        let _ = self.babel_commands.send(lines.to_vec());
    }

    /// Makes babeld forget an interface's neighbours and routes and take it
    /// back with its default parameters. Needed whenever its tap lost
    /// carrier (its OpenVPN stopped): the kernel then dropped the routes
    /// through it behind babeld's back, and babeld, believing them
    /// installed, would never put them back.
    fn reset_babel_iface(&self, iface: &str) {
        let lines = [
            format!("flush interface {iface}"),
            format!("interface {iface} {}", self.defaults),
        ];
        self.tell_babel(&lines);
    }

    /// Starts comparing babeld's routes with the kernel's (see
    /// [`KernelCheck`]); [`Node::fix_kernel_routes`] gets the result.
    fn check_kernel_routes(&mut self) {
        if std::mem::replace(&mut self.in_flight.kernel_check, true) {
            return;
        }
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

    /// Starts a dump for the tunnel manager, unless one is under way.
    fn request_dump(&mut self) {
        if std::mem::replace(&mut self.in_flight.dump, true) {
            return;
        }
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
        if self.in_flight.status_dumps >= STATUS_DUMPS {
            self.write_status(stream, None);
            return;
        }
        self.in_flight.status_dumps += 1;
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

    /// What a task reports: applies it, and says in `asked` what the loop
    /// must restart.
    async fn on_done(&mut self, done: Done, udp: &UdpSocket, asked: &mut Asked) {
        let v = self.o.verbose;
        match done {
            Done::Routes(view) => {
                self.in_flight.dump = false;
                if let Some(view) = view {
                    self.manager.on_routes(mono(), view);
                }
            }
            Done::Status(stream, view) => {
                self.in_flight.status_dumps -= 1;
                self.write_status(stream, view);
                return;
            }
            Done::Bootstrap(answer) => {
                self.in_flight.bootstrap = false;
                if let Some(msg) = bootstrap_notice(&answer, &mut self.bootstrap_misses) {
                    log(1, v, msg);
                }
                let peer = answer.ok().flatten();
                let peer = peer.and_then(|(p, a)| Some((p.parse::<Prefix>().ok()?, a)));
                self.manager.on_bootstrap(peer);
            }
            Done::NetworkConfig(answer) => {
                self.in_flight.config = false;
                if let Some(plan) = self.update_config(udp, answer).await {
                    if plan.too_old {
                        log(
                            0,
                            v,
                            "our protocol is older than the network's minimum: upgrade re6st",
                        );
                    }
                    if plan.reexec {
                        log(1, v, "network configuration changed: restarting the node");
                        asked.reexec = true;
                    }
                    if plan.renew {
                        self.renewal_check = now();
                    }
                    asked.restart_babel |= plan.restart_babel;
                    asked.restart_servers |= plan.restart_servers;
                    asked.drop_served = plan.drop_served;
                }
            }
            Done::Renewal(r) => {
                self.in_flight.renewal = false;
                if r.retry_tomorrow {
                    self.renewal_check = now() + 86_400;
                }
                if let Some(cert) = r.cert {
                    self.my_cert = cert;
                }
                match r.renewed {
                    Renewed::Ca => {
                        log(1, v, "new CA: restarting the node");
                        asked.reexec = true;
                    }
                    Renewed::Cert => {
                        // Babel and the taps stay: peers keep seeing
                        // the same neighbours, only the tunnels restart.
                        log(1, v, "new certificate: reconnecting the tunnels with it");
                        self.use_new_cert();
                        asked.restart_servers = true;
                    }
                    Renewed::Nothing => {}
                }
            }
            Done::KernelRoutes(found) => {
                self.in_flight.kernel_check = false;
                if let Some((table, kernel)) = found {
                    self.fix_kernel_routes(&table, &kernel);
                }
            }
        }
        self.run_actions(udp).await;
    }
}

/// What to say about a bootstrap answer, `misses` counting the answers in
/// a row that gave no peer: the first, then the 2nd, 4th, 8th... (a node
/// alone asks every few seconds).
fn bootstrap_notice<T, E: std::fmt::Display>(
    answer: &Result<Option<T>, E>,
    misses: &mut u32,
) -> Option<String> {
    if let Ok(Some(_)) = answer {
        *misses = 0;
        return None;
    }
    *misses = misses.saturating_add(1);
    if !misses.is_power_of_two() {
        return None;
    }
    let n = *misses;
    Some(match answer {
        Err(e) => format!("no bootstrap peer from the registry ({n} in a row): {e}"),
        _ => format!(
            "no bootstrap peer from the registry ({n} in a row): it knows no running node \
             to give. The network forms once the registry's own node (the first one it \
             registered) runs on the registry's host and re6st-registry -r is that node's \
             run directory; the registry's log says which is missing"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_bootstrap_answer_says_why_and_what_to_do_without_flooding() {
        let mut misses = 0;
        let none: Result<Option<()>, String> = Ok(None);
        let said: Vec<Option<String>> = (0..8)
            .map(|_| bootstrap_notice(&none, &mut misses))
            .collect();
        let at: Vec<usize> = (0..8).filter(|&i| said[i].is_some()).collect();
        assert_eq!(at, [0, 1, 3, 7]);
        let first = said[0].as_deref().unwrap();
        assert!(first.contains("(1 in a row)"), "{first}");
        assert!(first.contains("registry's own node"), "{first}");
        assert!(first.contains("-r is that node's run directory"), "{first}");
        // A peer resets the count; an error is said with its cause.
        assert_eq!(
            bootstrap_notice(&Ok::<_, String>(Some(())), &mut misses),
            None
        );
        let failed: Result<Option<()>, String> = Err("registry answered 500".into());
        let msg = bootstrap_notice(&failed, &mut misses).unwrap();
        assert!(msg.contains("(1 in a row): registry answered 500"), "{msg}");
    }

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
