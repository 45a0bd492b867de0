//! The node's slow work (registry calls, babeld dumps and commands, the
//! kernel's route listing, kernel operations, the peer cache's file),
//! each run in its own task that reports back to
//! the event loop as a [`Done`]: the loop itself awaits only its channels,
//! sockets and timers, so that hooks, peers and `re6st ctl` are answered
//! whatever babeld or the registry are doing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use re6st_proto::netconfig::NetworkConfig;
use re6st_proto::prefix::Prefix;
use re6st_registry_client::client::{ClientError, RegistryClient};
use tokio::sync::{mpsc, Mutex};

use super::handover;
use super::log::log;
use super::renewal;
use crate::babel::client::BabelClient;
use crate::babel::kernel_check::{kernel_routes, KernelRoute, Net};
use crate::babel::table::Table;
use crate::kernel::netlink::Netlink;
use crate::kernel::op::PROTO_BABEL;
use crate::kernel::{self, NetOp};
use re6st_node_core::tunnel::RoutingView;

/// What a task did, for the event loop.
pub enum Done {
    /// A dump for the tunnel manager (none: babeld did not answer).
    Routes(Option<RoutingView>),
    /// A dump for a `re6st ctl status` client, to answer on `stream`.
    Status(tokio::net::UnixStream, Option<RoutingView>),
    Bootstrap(Result<Option<(String, String)>, ClientError>),
    NetworkConfig(Result<NetworkConfig, ClientError>),
    Renewal(RenewalOutcome),
    /// babeld's table and the kernel's routes of babeld's protocol.
    KernelRoutes(Option<(Table, KernelRoutes)>),
    /// The peer cache written (or why not).
    CacheSaved(Result<(), String>),
}

/// The kernel's routes of babeld's protocol, by (destination, source).
pub type KernelRoutes = BTreeMap<(Net, Net), KernelRoute>;

/// How long babeld has to answer a dump or a command before the task gives
/// up (the loop goes on meanwhile).
pub const BABEL_WAIT: Duration = Duration::from_secs(5);

/// What reads babeld's routes into a [`RoutingView`].
#[derive(Clone)]
pub struct ViewSource {
    pub socket: PathBuf,
    pub network: Prefix,
    pub me: Prefix,
    /// `--interface`s: babel neighbours there are LAN neighbours.
    pub lan: Vec<String>,
}

impl ViewSource {
    pub async fn table(&self) -> Option<Table> {
        babel_table(&self.socket).await
    }

    pub async fn view(&self) -> Option<RoutingView> {
        Some(self.view_of(&self.table().await?))
    }

    /// What a dump of babeld's table says, for the tunnel manager (apart
    /// from [`ViewSource::view`] so that the fuzz target `node_core` feeds
    /// the core the views it gets in production).
    pub fn view_of(&self, t: &Table) -> RoutingView {
        let mut view = RoutingView {
            known: t.reachable(&self.network),
            ..Default::default()
        };
        for ((iface, _), (own, via)) in t.by_neighbour(&self.network) {
            if let (Some(p), true) = (own, self.lan.contains(&iface)) {
                view.lan_neighbours.insert(p);
            }
            if let Some(p) = own {
                view.neighbours.insert(p);
                *view.links.entry((iface.clone(), p)).or_default() += via.len();
            }
            *view.routes_per_iface.entry(iface).or_default() += via.len();
        }
        view.known.remove(&self.me);
        view
    }
}

/// What babeld knows now (one `dump`).
async fn babel_table(socket: &std::path::Path) -> Option<Table> {
    let mut c = BabelClient::connect(socket, BABEL_WAIT).await.ok()?;
    c.dump_table().await.ok()
}

/// babeld's table and the kernel's routes of protocol 42 (babeld's).
pub async fn kernel_and_babel(source: ViewSource) -> Done {
    let Some(t) = source.table().await else {
        return Done::KernelRoutes(None);
    };
    let listing = tokio::task::spawn_blocking(|| {
        let mut nl = Netlink::open()?;
        let mut routes = nl.routes(false, Some(PROTO_BABEL), None)?;
        routes.extend(nl.routes(true, Some(PROTO_BABEL), None)?);
        std::io::Result::Ok(routes)
    })
    .await;
    let Ok(Ok(listing)) = listing else {
        return Done::KernelRoutes(None);
    };
    let kernel = kernel_routes(listing);
    Done::KernelRoutes(Some((t, kernel)))
}

/// Sends babeld the configuration lines queued by the loop, in order (best
/// effort: a babeld being restarted takes its configuration from its
/// command line).
pub async fn send_babel_commands(socket: PathBuf, mut rx: mpsc::UnboundedReceiver<Vec<String>>) {
    while let Some(lines) = rx.recv().await {
        if let Ok(mut c) = BabelClient::connect(&socket, BABEL_WAIT).await {
            for l in lines {
                let _ = c.request(&l).await;
            }
        }
    }
}

/// Kernel work the loop hands to one task, carried out in the order it
/// was decided (a tap's routes held before babel is silenced there, a
/// closed tunnel's routes deleted before a fix puts others on its tap).
pub enum KernelJob {
    /// Operations applied one after the other (logged).
    Apply(Vec<NetOp>),
    /// Copies of babeld's routes through a tap being drained
    /// ([`handover::hold`]), or their removal.
    Hold { iface: String, hold: bool },
    /// babeld's routes through the tap of a closed tunnel go.
    ForgetBabelRoutes(String),
    /// babel silenced on a tap, or heard again ([`handover::mute`]).
    Mute { iface: String, mute: bool },
}

impl KernelJob {
    fn run(self, verbose: u8) {
        match self {
            KernelJob::Apply(ops) => kernel::apply_logged(&ops, verbose),
            KernelJob::Hold { iface, hold: true } => handover::hold(&iface),
            KernelJob::Hold { iface, hold: false } => handover::release(&iface),
            KernelJob::ForgetBabelRoutes(iface) => handover::forget_babel_routes(&iface),
            KernelJob::Mute { iface, mute } => {
                if let Err(e) = handover::mute(&iface, mute) {
                    let what = if mute { "silence" } else { "unsilence" };
                    log(0, verbose, format!("{iface}: cannot {what} babel: {e}"));
                }
            }
        }
    }
}

/// Carries out the loop's kernel jobs in order, off the event loop.
pub async fn run_kernel_jobs(mut rx: mpsc::UnboundedReceiver<KernelJob>, verbose: u8) {
    while let Some(job) = rx.recv().await {
        let _ = tokio::task::spawn_blocking(move || job.run(verbose)).await;
    }
}

/// Kills a child without waiting for it here: its exit is reaped by a task.
pub fn kill_in_background(mut child: tokio::process::Child) {
    let _ = child.start_kill();
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
}

/// What a renewal check brought.
pub enum Renewed {
    Nothing,
    /// A new certificate, saved: to use at once.
    Cert,
    /// A new CA, saved: the node starts over.
    Ca,
}

pub struct RenewalOutcome {
    pub renewed: Renewed,
    /// The new certificate, when one was saved.
    pub cert: Option<X509>,
    /// The registry's renewed certificate was no closer to its end: the
    /// next attempt is tomorrow.
    pub retry_tomorrow: bool,
}

/// What a renewal check needs.
pub struct RenewalInput {
    pub registry: Arc<Mutex<RegistryClient>>,
    pub ca: X509,
    pub ca_path: PathBuf,
    pub cert: X509,
    pub cert_path: PathBuf,
    pub key: PKey<Private>,
    /// Our certificate is on the CRL.
    pub revoked: bool,
    pub now: i64,
    pub verbose: u8,
}

/// Takes a new CA of our network, and renews our certificate when it ends
/// within 30 days or is revoked.
pub async fn renew(i: RenewalInput) -> Done {
    let v = i.verbose;
    let mut new_ca = false;
    let ca_pem = i.registry.lock().await.ca().await;
    match ca_pem {
        Ok(pem) => {
            if let Some(new) = renewal::replacement_ca(&pem, &i.ca) {
                match new.to_pem().map_err(|e| e.to_string()).and_then(|p| {
                    crate::state::write_atomic(&i.ca_path, &p, 0o644).map_err(|e| e.to_string())
                }) {
                    Ok(()) => {
                        log(1, v, "the registry has a new CA: saved");
                        new_ca = true;
                    }
                    Err(e) => log(1, v, format!("cannot save the new CA: {e}")),
                }
            }
        }
        Err(e) => log(3, v, format!("CA check: {e}")),
    }
    let outcome = |renewed, cert, retry_tomorrow| {
        Done::Renewal(RenewalOutcome {
            renewed,
            cert,
            retry_tomorrow,
        })
    };
    let or_ca = |r| if new_ca { Renewed::Ca } else { r };
    let end = renewal::unix(i.cert.not_after()).unwrap_or(0);
    if i.revoked {
        log(
            1,
            v,
            "our certificate is revoked: asking the registry for a new one",
        );
    } else if renewal::due(end, i.now) {
        log(1, v, "our certificate ends within 30 days: renewing it");
    } else {
        return outcome(or_ca(Renewed::Nothing), None, false);
    }
    let answer = i.registry.lock().await.renew_certificate().await;
    let pem = match answer {
        Ok(p) => p,
        Err(e) => {
            log(1, v, format!("certificate renewal: {e}"));
            return outcome(or_ca(Renewed::Nothing), None, false);
        }
    };
    match renewal::acceptable_cert(&pem, &i.cert, &i.key, &i.ca, i.revoked) {
        Ok(new) => match crate::state::write_atomic(&i.cert_path, &pem, 0o644) {
            Ok(()) => {
                log(1, v, "certificate renewed");
                outcome(or_ca(Renewed::Cert), Some(new), false)
            }
            Err(e) => {
                log(1, v, format!("cannot save the new certificate: {e}"));
                outcome(or_ca(Renewed::Nothing), None, false)
            }
        },
        // Not closer to its end at the registry: try again tomorrow.
        Err(e) => {
            log(1, v, format!("renewed certificate refused: {e}"));
            outcome(or_ca(Renewed::Nothing), None, true)
        }
    }
}
