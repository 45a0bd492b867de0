//! Setting the node up: certificates, the network configuration (from
//! the registry, or its cached copy), DH parameters, our addresses and
//! country, then the kernel's state (addresses, routes, taps) in one
//! [`Setup`] that undoes exactly what it did however the run ends; then
//! the event loop.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openssl::pkey::PKey;
use openssl::x509::X509;
use re6st_proto::cert;
use re6st_proto::netconfig::NetworkConfig;
use re6st_proto::peer::{Identity, PeerTable};
use re6st_proto::prefix::{node_address, Prefix};
use re6st_registry_client::client::RegistryClient;
use re6st_registry_client::transport::RegistryUrl;
use tokio::sync::mpsc;

use super::clock::{clock, mono};
use super::error::NodeError;
use super::event_loop::{run_node, Inbox};
use super::log::log;
use super::node::Node;
use super::options::OptionError;
use super::options::Options;
use crate::babel::kernel_check::KernelCheck;
use crate::kernel::netlink::Netlink;
use crate::kernel::op::{PROTO_BOOT, PROTO_STATIC};
use crate::kernel::{Addr, KernelError, NetOp, Route, Setup};
use crate::nat::advertised::Advertised;
use crate::openvpn::args::Common;
use crate::state::{netconfig as netconfig_cache, peers as peers_file, peers::DEFAULT_CAPACITY};
use crate::underlay::{GatewayError, RemoteGateways};
use re6st_node_core::node::NodeCore;
use re6st_node_core::peer_link::PeerLink;
use re6st_node_core::tunnel::{Config, CountryRule, Manager};

/// How long a starting node waits for a previous one on the same run
/// directory to finish its clean-up (a quick restart) before giving up.
const INSTANCE_WAIT: Duration = Duration::from_secs(30);

async fn network_config(o: &Options, registry: &mut RegistryClient, ca: &X509) -> NetworkConfig {
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
                return c;
            }
            Err(e) => {
                match netconfig_cache::load(&path) {
                    Ok(c) if c.verify_version(ca).is_ok() => {
                        log(1, o.verbose, format!("registry unreachable ({e}): using the cached network configuration"));
                        return c;
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

pub(super) async fn run(o: Options) -> Result<(), NodeError> {
    let read = |p: &Path| std::fs::read(p).map_err(NodeError::file(p));
    let pem = |what| move |source| NodeError::Pem { what, source };
    let cert = |what| move |source| NodeError::Cert { what, source };
    let ca = X509::from_pem(&read(&o.ca)?).map_err(pem("CA"))?;
    let my_cert = X509::from_pem(&read(&o.cert)?).map_err(pem("certificate"))?;
    let key = PKey::private_key_from_pem(&read(&o.key)?).map_err(pem("key"))?;
    let network = cert::network_from_ca(&ca).map_err(cert("CA"))?;
    let prefix = cert::node_prefix(&my_cert).map_err(cert("certificate"))?;
    // Weak DH parameters let every OpenVPN server of ours die at start, in
    // a loop: refuse them before anything runs.
    let cached_dh = o.state.join("dh.pem");
    match &o.dh {
        Some(d) => {
            re6st_proto::dh::check(&read(d)?, &d.display().to_string()).map_err(|source| {
                NodeError::Dh {
                    path: d.clone(),
                    source,
                }
            })?
        }
        None if cached_dh.exists() => {
            re6st_proto::dh::check(&read(&cached_dh)?, &cached_dh.display().to_string()).map_err(
                |source| NodeError::CachedDh {
                    path: cached_dh.clone(),
                    source,
                },
            )?
        }
        None => 0,
    };
    for d in [&o.state, &o.run, &o.log] {
        std::fs::create_dir_all(d).map_err(NodeError::file(d))?;
    }
    let _instance = super::instance::acquire(&o.run, INSTANCE_WAIT, o.verbose).await?;
    let url = RegistryUrl::parse(&o.registry).map_err(NodeError::RegistryUrl)?;
    let mut registry = RegistryClient::new(
        url,
        ca.clone(),
        key.clone(),
        &prefix,
        Duration::from_secs(20),
    );
    let config = network_config(&o, &mut registry, &ca).await;
    let dh = match &o.dh {
        Some(d) => d.clone(),
        None => {
            let d = cached_dh;
            // A copy there was checked above.
            if !d.exists() {
                let pem = registry.dh().await.map_err(NodeError::FetchDh)?;
                // Not kept: the registry's operator has to replace them.
                re6st_proto::dh::check(&pem, "dh.pem").map_err(NodeError::RegistryDh)?;
                crate::state::write_atomic(&d, &pem, 0o644).map_err(NodeError::file(&d))?;
            }
            d
        }
    };
    let subnet = network.concat(&prefix)?;
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
    let my_ip = node_address(&network, &prefix)?;
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
                return Err(OptionError::Client(list.clone()).into());
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
    let exe = std::env::current_exe().map_err(|source| NodeError::Process {
        what: "this program's path",
        source,
    })?;
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
    for gw in remote_gateways.gateways() {
        check_on_link(*gw)?;
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
            let (kernel_jobs, kernel_rx) = mpsc::unbounded_channel();
            run_node(
                o.clone(),
                Node {
                    o: o.clone(),
                    network,
                    prefix,
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
                        PeerLink {
                            me: Identity::new(ca.clone(), my_cert.clone(), key.clone())
                                .map_err(NodeError::Identity)?,
                            peers: PeerTable::default(),
                            crl: config.crl.clone(),
                            my_address,
                            version: config.version.clone(),
                            info: format!("re6st-rs {}", env!("CARGO_PKG_VERSION")),
                            pending: Default::default(),
                            random: random_bytes,
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
                    kernel_jobs,
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
                    kernel_jobs: kernel_rx,
                },
            )
            .await
        }
        Err(e) => Err(e.into()),
    };
    drop(setup);
    result
}

/// A `--remote-gateway` must be on a directly connected network (as for
/// any route's gateway): else every tunnel's route through it would fail.
fn check_on_link(gw: std::net::Ipv4Addr) -> Result<(), GatewayError> {
    let route = Netlink::open()
        .and_then(|mut nl| nl.route_to(gw.into()))
        .map_err(|source| GatewayError::Unreachable { gw, source })?;
    if route.via.is_some() {
        return Err(GatewayError::NotOnLink {
            gw,
            route: route.to_string(),
        });
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

/// Random bytes for the peer link's session secrets.
fn random_bytes(b: &mut [u8]) {
    let _ = openssl::rand::rand_bytes(b);
}
