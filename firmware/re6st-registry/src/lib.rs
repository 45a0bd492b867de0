//! The re6st registry: the network's certificate authority and bootstrap
//! service, over HTTP, wire-compatible with upstream re6stnet's registry
//! and using the same `registry.db`.
//!
//! Modules, one job each: [`alloc`] (prefix tree), [`babel`] (routed
//! nodes from babeld), [`certs`] (issuance),
//! [`community`], [`config`] (options), [`db`] (schema, transactions),
//! [`geoip`], [`http`] (hyper shell), [`init`] (new network), [`mail`]
//! (tokens), [`methods`] (RPC table and binding), [`network`] (network
//! configuration, version, babel keys), [`registry`] (the RPCs),
//! [`relay`] (UDP to the local node), [`session`] (HMAC sessions).

pub mod alloc;
pub mod babel;
pub mod certs;
pub mod community;
pub mod config;
pub mod db;
pub mod geoip;
pub mod http;
pub mod init;
pub mod mail;
pub mod methods;
pub mod metrics;
pub mod network;
pub mod registry;
pub mod relay;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use config::Options;
use registry::{Registry, Settings, SystemEnvironment};

/// UDP address of the local node's relay.
pub const LOCAL_NODE: &str = "[::1]:326";

/// Entry point of `re6st-registry`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let options = match Options::parse_from_args(args) {
        Ok(o) => o,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Some(network) = &options.init_network {
        return match init::init_network(network, &options.dir, options.ca_email.as_deref()) {
            Ok(c) => {
                println!(
                    "Created {}, {} and {}.\nCA fingerprint (for re6st-conf --fingerprint): sha1:{}\n\
                     Start the registry with:\n  re6st-registry --ca {} --key {} --dh {} ...",
                    c.ca.display(),
                    c.key.display(),
                    c.dh.display(),
                    c.fingerprint,
                    c.ca.display(),
                    c.key.display(),
                    c.dh.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("re6st-registry: {e}");
                ExitCode::FAILURE
            }
        };
    }
    setup_log(&options);
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("re6st-registry: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to --logfile ('-': stderr); under systemd (stderr is the journal)
/// to journald, and to the file as well only when --logfile was given.
fn setup_log(o: &Options) {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let level = match o.verbose {
        0 => LevelFilter::OFF,
        1 => LevelFilter::WARN,
        2 => LevelFilter::INFO,
        3 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let journald = re6st_proto::journal::stderr_is_journal()
        .then(|| tracing_journald::layer().ok())
        .flatten()
        .map(|l| l.with_syslog_identifier("re6st-registry".into()));
    let want_file =
        o.logfile != "-" && !o.logfile.is_empty() && (journald.is_none() || o.logfile_given);
    let file = want_file
        .then(|| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&o.logfile)
                .map_err(|e| eprintln!("re6st-registry: {}: {e}; logging to stderr", o.logfile))
                .ok()
        })
        .flatten();
    let fmt = tracing_subscriber::fmt::layer().with_ansi(false);
    let text = match (file, &journald) {
        (Some(f), _) => Some(fmt.with_writer(Mutex::new(f)).boxed()),
        (None, None) => Some(fmt.with_writer(std::io::stderr).boxed()),
        (None, Some(_)) => None,
    };
    let _ = tracing_subscriber::registry()
        .with(text.with_filter(level))
        .with(journald.with_filter(level))
        .try_init();
}

/// Builds the registry from options (without listening).
pub fn build(o: &Options) -> Result<Registry, String> {
    let (ca_path, key_path, dh) = o.pki_paths().map_err(|e| e.to_string())?;
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let ca = certs::Ca::from_pem(&read(ca_path)?, &read(key_path)?).map_err(|e| e.to_string())?;
    // Served to every node for its OpenVPN servers, which die on weak ones.
    re6st_proto::dh::check(&read(dh)?, &dh.display().to_string())
        .map_err(|e| format!("--dh {}: {e}", dh.display()))?;
    let geoip = match std::env::var_os("GEOIP2_MMDB").filter(|v| !v.is_empty()) {
        Some(p) => Some(geoip::GeoIp::open(p.as_ref()).map_err(|e| e.to_string())?),
        None => None,
    };
    let params = o
        .network_params(re6st_proto::PROTOCOL, geoip.is_some())
        .map_err(|e| e.to_string())?;
    let communities = match &o.community {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            community::Communities::parse(&text)
                .map_err(|e| format!("invalid community configuration: {e}"))?
        }
        None => community::Communities::default(),
    };
    let mailer = o.mailhost.as_deref().map(|h| {
        mail::Mailer::new(
            h,
            o.smtp_starttls,
            o.smtp_user.as_deref(),
            o.smtp_pwd.as_deref(),
        )
    });
    let settings = Settings {
        prefix_length: o.prefix_length,
        anonymous_prefix_length: o.anonymous_prefix_length,
        grace_period: o.grace_period,
        dh: dh.clone(),
        authorized_origins: o.authorized_origins(),
        mailer,
        communities,
        params,
    };
    let db = db::Db::open(&o.db).map_err(|e| format!("{}: {e}", o.db.display()))?;
    let node: SocketAddr = LOCAL_NODE.parse().map_err(|e| format!("{e}"))?;
    let relay =
        relay::Relay::new(node, relay::TIMEOUT).map_err(|e| format!("relay socket: {e}"))?;
    tracing::info!("network: {}/{}", ca.network.to_ipv6(), ca.network.len());
    let peers = babel::BabelPeers {
        socket: o.run.join("babeld.sock"),
        network: ca.network,
    };
    let registry = Registry::new(
        db,
        ca,
        settings,
        geoip,
        Some(relay),
        Box::new(peers),
        Box::new(SystemEnvironment),
    )
    .map_err(|e| e.to_string())?;
    // Certificates are served without a node; bootstrap is not: say so
    // now rather than let the network silently never form.
    for problem in registry.bootstrap_problems().map_err(|e| e.to_string())? {
        tracing::warn!("{problem}");
    }
    Ok(registry)
}

fn run(o: Options) -> Result<(), String> {
    let tls = match o.tls().map_err(|e| e.to_string())? {
        Some((cert, key)) => Some(Arc::new(
            http::tls_acceptor(cert, key).map_err(|e| format!("TLS: {e}"))?,
        )),
        None => None,
    };
    let registry = Arc::new(build(&o)?);
    {
        let r = registry.clone();
        std::thread::Builder::new()
            .name("cleanup".into())
            .spawn(move || r.cleanup_loop())
            .map_err(|e| e.to_string())?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let limits = http::Limits {
        per_source: o.max_connections_per_source,
        ..http::Limits::default()
    };
    runtime.block_on(async {
        let mut tasks = vec![];
        for bind in [&o.bind4, &o.bind6] {
            if bind.is_empty() {
                continue;
            }
            let ip: std::net::IpAddr = bind
                .parse()
                .map_err(|_| format!("invalid address {bind:?}"))?;
            let addr = SocketAddr::new(ip, o.port);
            let listener = http::listen(addr).map_err(|e| format!("{addr}: {e}"))?;
            tracing::info!("listening on {addr}");
            tasks.push(tokio::spawn(http::run(
                listener,
                registry.clone(),
                tls.clone(),
                limits,
            )));
        }
        if tasks.is_empty() {
            return Err("nothing to listen on (-4 and -6 are both empty)".to_owned());
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    })
}
