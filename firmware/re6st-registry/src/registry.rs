//! The registry service: every RPC, over the database, the CA and the
//! sessions. Transport-independent: [`Registry::handle`] takes a request
//! target and headers and returns a status, body and response HMAC.
//!
//! Every database change runs in one transaction under the database lock,
//! so concurrent requests never get the same prefix or serial and never
//! lose an update.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::x509::X509;
use re6st_proto::cert as pcert;
use re6st_proto::crypto;
use re6st_proto::prefix::Prefix;
use rusqlite::types::Value;
use serde_json::Value as Json;
use thiserror::Error;

use crate::alloc::{self, AllocError};
use crate::certs::{self, Ca, Issue, Renewal};
use crate::community::Communities;
use crate::db::{Db, DbError, Token, Tx, RESERVED};
use crate::geoip::{GeoIp, UNKNOWN};
use crate::mail::{self, Mailer};
use crate::methods::{self, Bound, MethodId};
use crate::network::{python_json, HmacKeys, NetworkParams, BABEL_HMAC};
use crate::relay::Relay;
use re6st_proto::rpc::{self, Sessions};

/// Header of request and response HMACs (base64).
pub const HMAC_HEADER: &str = "Re6stHMAC";

/// How long a list of bootstrap candidates is reused.
const BOOTSTRAP_CACHE_SECS: i64 = 60;

/// An RPC failure, with its HTTP status.
#[derive(Debug, Error)]
pub enum RpcError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("forbidden")]
    Forbidden,
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict")]
    Conflict,
    #[error("internal error: {0}")]
    Internal(String),
}

impl RpcError {
    pub fn status(&self) -> u16 {
        match self {
            RpcError::BadRequest(_) => 400,
            RpcError::Forbidden => 403,
            RpcError::NotFound(_) => 404,
            RpcError::Conflict => 409,
            RpcError::Internal(_) => 500,
        }
    }
}

/// Certificate requests committed together at most: bounds how long
/// the database stays locked for one group.
const MAX_GROUP_COMMIT: usize = 64;

/// A certificate request waiting for its group commit.
struct IssueJob {
    token: String,
    request: certs::Request,
    /// Taken when the certificate is issued.
    draft: Option<certs::Draft>,
    community: Prefix,
    turn: Arc<Turn>,
}

/// What the thread of a queued certificate request waits for.
#[derive(Default)]
enum TurnState {
    #[default]
    Wait,
    /// To commit the next group (this request's among them).
    Lead,
    /// Its group is committed (or failed).
    Answered(Result<Option<Vec<u8>>, RpcError>),
}

#[derive(Default)]
struct Turn(Mutex<TurnState>, Condvar);

impl Turn {
    fn set(&self, state: TurnState) {
        *lock(&self.0) = state;
        self.1.notify_one();
    }
}

/// The requests a thread commits; when dropped, the lead passes to the
/// next queued request. Should the thread panic, its requests are
/// answered with an error rather than left waiting.
struct Group<'a> {
    registry: &'a Registry,
    jobs: Vec<IssueJob>,
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for job in &self.jobs {
                job.turn.set(TurnState::Answered(Err(internal(
                    "certificate request failed",
                ))));
            }
        }
        let mut queue = lock(&self.registry.issue_queue);
        match queue.jobs.front() {
            Some(next) => next.turn.set(TurnState::Lead),
            None => queue.leading = false,
        }
    }
}

/// Certificate requests waiting for a group commit.
#[derive(Default)]
struct IssueQueue {
    jobs: std::collections::VecDeque<IssueJob>,
    /// Whether a request's thread is committing a group (the next one
    /// is then handed the lead when it is done).
    leading: bool,
}

/// Generated tokens drawn before giving up (each is 64 random bits).
const MAX_TOKEN_DRAWS: u32 = 16;

fn internal(e: impl std::fmt::Display) -> RpcError {
    RpcError::Internal(e.to_string())
}

impl From<DbError> for RpcError {
    fn from(e: DbError) -> Self {
        internal(e)
    }
}

impl From<rusqlite::Error> for RpcError {
    fn from(e: rusqlite::Error) -> Self {
        internal(e)
    }
}

/// Time and randomness, passed in so that tests control them.
pub trait Environment: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
    fn now_micros(&self) -> u64;
    fn random(&self, buf: &mut [u8]);
}

pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn now(&self) -> i64 {
        (self.now_micros() / 1_000_000) as i64
    }
    fn now_micros(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    }
    fn random(&self, buf: &mut [u8]) {
        // OpenSSL's CSPRNG only fails when it cannot be seeded at all.
        if openssl::rand::rand_bytes(buf).is_err() {
            panic!("no source of randomness");
        }
    }
}

/// Prefixes of the nodes the registry's own node routes to (babel's
/// neighbours' routes): candidates for bootstrap and `versions`.
pub trait PeerSource: Send + Sync {
    /// The prefixes, or why they cannot be known and what to do (for the
    /// operator).
    fn peers(&self) -> Result<Vec<Prefix>, String>;
}

/// No routing information: only the registry's own node is known.
pub struct NoPeers;

impl PeerSource for NoPeers {
    fn peers(&self) -> Result<Vec<Prefix>, String> {
        Ok(vec![])
    }
}

/// What to do when the registry has no node (for log lines).
pub const NO_NODE_HINT: &str = "the registry has no node yet: the first certificate it \
     issues is its own node's; run that node on the registry's host (re6st-conf, then \
     re6st node) with its run directory given to the registry as -r";

/// Settings from the command line.
pub struct Settings {
    pub prefix_length: u8,
    pub anonymous_prefix_length: Option<u8>,
    pub grace_period: i64,
    pub dh: PathBuf,
    pub authorized_origins: Vec<String>,
    pub mailer: Option<Mailer>,
    pub communities: Communities,
    pub params: NetworkParams,
}

/// What the transport passes in.
pub struct Request<'a> {
    /// Path and query, as received (the HMAC covers exactly this).
    pub target: &'a str,
    /// The `Re6stHMAC` header.
    pub hmac: Option<&'a str>,
    /// The peer of the connection.
    pub client: IpAddr,
    pub forwarded_for: Option<&'a str>,
}

/// What the transport sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// `Re6stHMAC` of the body, for authenticated calls.
    pub hmac: Option<String>,
}

impl Reply {
    pub fn error(status: u16) -> Reply {
        Reply {
            status,
            body: vec![],
            hmac: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum StartError {
    #[error("{0}")]
    Db(#[from] DbError),
    #[error("invalid community configuration: {0}")]
    Community(String),
    #[error("{0}")]
    Rpc(#[from] RpcError),
}

pub struct Registry {
    db: Mutex<Db>,
    /// Certificate requests waiting to be committed together.
    issue_queue: Mutex<IssueQueue>,
    sessions: Mutex<Sessions>,
    ca: Ca,
    settings: Settings,
    geoip: Option<GeoIp>,
    relay: Option<Relay>,
    peers: Box<dyn PeerSource>,
    /// Bootstrap candidates and when they go stale.
    bootstrap: Mutex<(i64, Vec<Prefix>)>,
    env: Box<dyn Environment>,
    /// The earliest expiry (plus grace period) of what was added since
    /// the cleanup task last looked, so that it wakes up in time for it.
    cleanup_wake: (Mutex<Option<i64>>, Condvar),
    /// Requests, certificates issued and latency, for `/metrics`.
    http_metrics: crate::metrics::HttpMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_authorized(origins: &[String], who: &str) -> bool {
    let who = who.trim();
    let parsed: Option<IpAddr> = who.parse().ok().map(canonical_ip);
    origins.iter().any(|o| {
        o == who || (parsed.is_some() && o.parse::<IpAddr>().ok().map(canonical_ip) == parsed)
    })
}

/// IPv4-mapped IPv6 addresses as IPv4 (a dual-stack socket reports them).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn parse_bits(s: &str) -> Result<Prefix, RpcError> {
    s.parse()
        .map_err(|_| RpcError::BadRequest(format!("invalid prefix {s:?}")))
}

impl Registry {
    /// Opens the registry: checks the database and communities, removes
    /// expired entries and brings the network configuration up to date.
    pub fn new(
        db: Db,
        ca: Ca,
        settings: Settings,
        geoip: Option<GeoIp>,
        relay: Option<Relay>,
        peers: Box<dyn PeerSource>,
        env: Box<dyn Environment>,
    ) -> Result<Registry, StartError> {
        let r = Registry {
            db: Mutex::new(db),
            issue_queue: Mutex::default(),
            sessions: Mutex::new(Sessions::default()),
            ca,
            settings,
            geoip,
            relay,
            peers,
            bootstrap: Mutex::new((0, vec![])),
            env,
            cleanup_wake: (Mutex::new(None), Condvar::new()),
            http_metrics: crate::metrics::HttpMetrics::default(),
        };
        let communities = r.settings.communities.prefixes();
        let check = lock(&r.db).transaction(|tx| alloc::check_communities(tx, &communities))?;
        check.map_err(StartError::Community)?;
        r.cleanup()?;
        let bumped = lock(&r.db).transaction(|tx| {
            if tx.config_has("prefix")? {
                r.refresh_network_config(tx)
            } else {
                // Until the registry's own node exists, nodes get a fresh
                // babel key at each start.
                tx.set_config(BABEL_HMAC[0], r.random_vec(16))?;
                Ok(None)
            }
        })?;
        r.notify(bumped);
        Ok(r)
    }

    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    fn random_vec(&self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.env.random(&mut v);
        v
    }

    /// Whether a request from `client` (through a proxy that says
    /// `forwarded_for`) may call private methods and read `/metrics`.
    pub fn is_authorized_origin(&self, client: IpAddr, forwarded_for: Option<&str>) -> bool {
        let origins = &self.settings.authorized_origins;
        let client = canonical_ip(client).to_string();
        let forwarded_ok = forwarded_for.is_none_or(|f| f.is_empty() || is_authorized(origins, f));
        is_authorized(origins, &client) && forwarded_ok
    }

    pub fn http_metrics(&self) -> &crate::metrics::HttpMetrics {
        &self.http_metrics
    }

    /// Certificates in the database (leaves with a certificate, not the
    /// reserved ones).
    pub fn certificate_count(&self) -> Result<usize, DbError> {
        lock(&self.db).transaction(|tx| tx.cert_count())
    }

    /// Serves one request.
    pub fn handle(&self, req: &Request<'_>) -> Reply {
        // As upstream: the method must exist, then the origin is checked
        // for private methods, and only then the parameters.
        let method = match methods::method_of(req.target) {
            Ok(m) => m,
            Err(e) => {
                tracing::info!("{}: {e}", req.target);
                return Reply::error(400);
            }
        };
        let name = method.name;
        if method.private && !self.is_authorized_origin(req.client, req.forwarded_for) {
            tracing::warn!(
                "{name}: forbidden for {} ({:?})",
                canonical_ip(req.client),
                req.forwarded_for
            );
            return Reply::error(403);
        }
        let bound = match methods::bind(req.target) {
            Ok(b) => b,
            Err(e) => {
                tracing::info!("{}: {e}", req.target);
                return Reply::error(400);
            }
        };
        let mut auth = None;
        if let Some(cn) = bound.cn() {
            let mac = req.hmac.and_then(|h| B64.decode(h.trim()).ok());
            let Some(mac) = mac else {
                return Reply::error(400);
            };
            match lock(&self.sessions).authenticate(cn, req.target.as_bytes(), &mac) {
                Ok(a) => auth = Some(a),
                Err(e) => {
                    tracing::info!("{name} from {cn}: {e}");
                    return Reply::error(400);
                }
            }
        } else {
            tracing::info!(
                "{name}: {}",
                req.forwarded_for.unwrap_or(&req.client.to_string())
            );
        }
        let client_ip = req
            .forwarded_for
            .and_then(|f| f.split(',').next())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map_or_else(|| canonical_ip(req.client).to_string(), str::to_owned);
        match self.call(&bound, &client_ip) {
            Ok(body) => {
                let body = body.unwrap_or_default();
                let hmac = match auth {
                    Some(a) => match rpc::response_header(&a.response_key, &body) {
                        Ok(h) => Some(h),
                        Err(e) => {
                            tracing::error!("{name}: {e}");
                            return Reply::error(500);
                        }
                    },
                    None => None,
                };
                Reply {
                    status: if body.is_empty() { 204 } else { 200 },
                    body,
                    hmac,
                }
            }
            Err(e) => {
                if e.status() == 500 {
                    tracing::warn!("{}: {e}", req.target);
                } else {
                    tracing::info!("{name}: {e}");
                }
                Reply::error(e.status())
            }
        }
    }

    fn call(&self, b: &Bound, client_ip: &str) -> Result<Option<Vec<u8>>, RpcError> {
        let a = |n: &str| b.arg(n);
        match b.method.id {
            MethodId::Hello => self.hello(a("client_prefix"), a("protocol")).map(Some),
            MethodId::RequestToken => self.request_token(a("email")).map(|()| None),
            MethodId::RequestCertificate => {
                let ip = if a("ip").is_empty() {
                    client_ip
                } else {
                    a("ip")
                };
                self.request_certificate(a("token"), a("req"), a("location"), ip)
            }
            MethodId::RenewCertificate => self.renew_certificate(a("cn")).map(Some),
            MethodId::GetCa => Ok(Some(self.ca.pem().map_err(internal)?)),
            MethodId::GetDh => std::fs::read(&self.settings.dh)
                .map(Some)
                .map_err(|e| internal(format!("{}: {e}", self.settings.dh.display()))),
            MethodId::GetNetworkConfig => self.network_config(a("cn")).map(Some),
            MethodId::GetCountry => self.country(a("address")),
            MethodId::GetBootstrapPeer => self.bootstrap_peer(a("cn")),
            MethodId::Revoke => self.revoke(a("cn_or_serial")).map(|()| None),
            MethodId::AddToken => self.add_token(a("email"), a("token")),
            MethodId::IsToken => {
                let found = lock(&self.db).transaction(|tx| tx.token(a("token")))?;
                Ok(found.map(|_| b"1".to_vec()))
            }
            MethodId::DeleteToken => {
                lock(&self.db).transaction(|tx| tx.delete_token(a("token")))?;
                Ok(None)
            }
            MethodId::UpdateHmac => self.update_hmac().map(|()| None),
            MethodId::GetNodePrefix => Ok(self
                .node_prefix(a("email"))?
                .map(|p| p.to_subnet().into_bytes())),
            MethodId::GetIpv6Address => self.ipv6_address(a("email")),
            MethodId::GetIpv4Information => self.ipv4_information(a("email")),
            MethodId::Versions => self.versions(),
            MethodId::Topology => self.topology(),
        }
    }

    // --- sessions and certificates ---

    fn cert_of(tx: &Tx<'_>, prefix: &Prefix) -> Result<(String, X509), RpcError> {
        let pem = tx
            .cert(prefix)?
            .filter(|c| c != RESERVED)
            .ok_or_else(|| internal(format!("no certificate for prefix {prefix}")))?;
        let cert = X509::from_pem(pem.as_bytes()).map_err(internal)?;
        Ok((pem, cert))
    }

    fn hello(&self, client_prefix: &str, protocol: &str) -> Result<Vec<u8>, RpcError> {
        let prefix = parse_bits(client_prefix)?;
        let protocol: u32 = protocol
            .trim()
            .parse()
            .map_err(|_| internal(format!("invalid protocol {protocol:?}")))?;
        let (_, cert) = lock(&self.db).transaction(|tx| Self::cert_of(tx, &prefix))?;
        // Like upstream's registry, a fully random secret.
        let mut secret = [0u8; rpc::KEY_LEN];
        self.env.random(&mut secret);
        let answer = rpc::hello_response(&cert, &self.ca.key, &secret).map_err(internal)?;
        lock(&self.sessions).hello(client_prefix, &secret, protocol);
        Ok(answer)
    }

    fn next_serial(tx: &Tx<'_>) -> Result<u64, RpcError> {
        let serial = tx.config_int("serial")?.unwrap_or(0).max(0) as u64 + 1;
        tx.set_config("serial", serial as i64)?;
        Ok(serial)
    }

    fn location(&self, location: &str, ip: &str) -> Result<(String, String), RpcError> {
        let Some(geoip) = &self.geoip else {
            return Ok((UNKNOWN.into(), UNKNOWN.into()));
        };
        let (country, continent) = if location.is_empty() {
            geoip.lookup(ip)
        } else {
            let (c, k) = location
                .split_once(',')
                .filter(|(_, k)| !k.contains(','))
                .ok_or_else(|| internal(format!("invalid location {location:?}")))?;
            (c.to_owned(), k.to_owned())
        };
        let continent = if continent == UNKNOWN {
            continent
        } else {
            format!("@{continent}")
        };
        Ok((country, continent))
    }

    /// Queues the request for the next group commit and waits for its
    /// answer, which is given only once its certificate is committed.
    fn request_certificate(
        &self,
        token: &str,
        req: &str,
        location: &str,
        ip: &str,
    ) -> Result<Option<Vec<u8>>, RpcError> {
        let request = certs::parse_request(req.as_bytes()).map_err(internal)?;
        let draft = certs::draft(&self.ca, &request.key).map_err(internal)?;
        let (country, continent) = self.location(location, ip)?;
        let turn = Arc::new(Turn::default());
        let lead = {
            let mut queue = lock(&self.issue_queue);
            queue.jobs.push_back(IssueJob {
                token: token.to_owned(),
                request,
                draft: Some(draft),
                community: self.settings.communities.select(&country, &continent),
                turn: turn.clone(),
            });
            !std::mem::replace(&mut queue.leading, true)
        };
        if lead {
            self.lead_group_commit();
        }
        loop {
            let mut state = turn
                .1
                .wait_while(lock(&turn.0), |s| matches!(s, TurnState::Wait))
                .unwrap_or_else(|e| e.into_inner());
            match std::mem::replace(&mut *state, TurnState::Wait) {
                TurnState::Answered(answer) => return answer,
                TurnState::Lead => {
                    drop(state);
                    self.lead_group_commit();
                }
                TurnState::Wait => {}
            }
        }
    }

    /// Commits the queued requests (up to [`MAX_GROUP_COMMIT`]) as one
    /// group, answers them, then hands the lead to the next request
    /// queued meanwhile, if any.
    fn lead_group_commit(&self) {
        let mut group = Group {
            registry: self,
            jobs: {
                let mut queue = lock(&self.issue_queue);
                let n = queue.jobs.len().min(MAX_GROUP_COMMIT);
                queue.jobs.drain(..n).collect()
            },
        };
        self.issue_group(&mut lock(&self.db), &mut group.jobs);
    }

    /// Issues certificates for `jobs` in one transaction, each in its own
    /// savepoint (one failing leaves the others), and answers each once
    /// the transaction is committed.
    fn issue_group(&self, db: &mut Db, jobs: &mut [IssueJob]) {
        let now = self.env.now();
        let committed = db.transaction(|tx| {
            let mut answers = Vec::with_capacity(jobs.len());
            let mut bumped = None;
            for job in jobs.iter_mut() {
                let answer = tx.savepoint(|tx| self.issue_one(tx, job, now))?;
                answers.push(answer.map(|(pem, b)| {
                    bumped = bumped.or(b);
                    pem
                }));
            }
            Ok::<_, RpcError>((answers, bumped))
        });
        match committed {
            Ok((answers, bumped)) => {
                for (job, answer) in jobs.iter().zip(answers) {
                    job.turn.set(TurnState::Answered(answer));
                }
                self.notify(bumped);
            }
            Err(e) => {
                tracing::warn!("requestCertificate: {e}");
                for job in jobs {
                    job.turn.set(TurnState::Answered(Err(internal(&e))));
                }
            }
        }
    }

    /// One certificate of a group: its certificate and, when it made the
    /// network configuration change, the registry node's prefix.
    fn issue_one(
        &self,
        tx: &mut Tx<'_>,
        job: &mut IssueJob,
        now: i64,
    ) -> Result<(Option<Vec<u8>>, Option<Prefix>), RpcError> {
        let (prefix_len, email) = if job.token.is_empty() {
            match self.settings.anonymous_prefix_length {
                Some(n) if n > 0 => (n, None),
                _ => return Err(RpcError::Forbidden),
            }
        } else {
            if self.settings.prefix_length == 0 {
                return Err(RpcError::Forbidden);
            }
            let Some(t) = tx.token(&job.token)? else {
                return Ok((None, None));
            };
            tx.delete_token(&job.token)?;
            (t.prefix_len, Some(t.email))
        };
        let prefix = alloc::allocate(tx, self.ca.network.len(), &job.community, prefix_len)
            .map_err(|e: AllocError<DbError>| internal(e))?;
        tx.set_email(&prefix, email.as_deref())?;
        let mut bumped = None;
        if !tx.config_has("prefix")? {
            tx.set_config("prefix", prefix.to_string())?;
            bumped = self.refresh_network_config(tx)?;
        }
        let subject_serial = tx.smallest_unused_subject_serial()?;
        let draft = job
            .draft
            .take()
            .ok_or_else(|| internal("certificate draft used twice"))?;
        let cert = certs::finish(
            &self.ca,
            draft,
            &Issue {
                subject: &job.request.subject,
                key: &job.request.key,
                prefix: &prefix,
                subject_serial: Some(subject_serial),
                serial: Self::next_serial(tx)?,
                not_before: now,
                not_after: now + certs::CERT_DURATION,
            },
        )
        .map_err(internal)?;
        let pem = String::from_utf8(cert.to_pem().map_err(internal)?).map_err(internal)?;
        tx.set_cert(&prefix, &pem, Some(subject_serial))?;
        tracing::info!(
            "issued {} for {}",
            prefix.to_subnet(),
            email.as_deref().unwrap_or("anonymous")
        );
        // No wake-up for the cleanup task: a new certificate expires in a
        // year, later than the task's longest sleep (a day).
        Ok((Some(pem.into_bytes()), bumped))
    }

    fn renew_certificate(&self, cn: &str) -> Result<Vec<u8>, RpcError> {
        let prefix = parse_bits(cn)?;
        let now = self.env.now();
        let pem = lock(&self.db).transaction(|tx| -> Result<Vec<u8>, RpcError> {
            let (pem, cert) = Self::cert_of(tx, &prefix)?;
            let not_after = pcert::not_after(&cert).map_err(internal)?;
            let serial = pcert::serial(&cert).map_err(internal)?;
            let revoked = i64::try_from(serial).map_or(Ok(false), |s| tx.is_revoked(s))?;
            let not_after = match certs::renewal(not_after, revoked, now) {
                Renewal::Keep => return Ok(pem.into_bytes()),
                Renewal::Extend => now + certs::CERT_DURATION,
                Renewal::Reissue { not_after } => not_after,
            };
            let key = cert.public_key().map_err(internal)?;
            let new = certs::issue(
                &self.ca,
                &Issue {
                    subject: cert.subject_name(),
                    key: &key,
                    prefix: &prefix,
                    subject_serial: None,
                    serial: Self::next_serial(tx)?,
                    not_before: now,
                    not_after,
                },
            )
            .map_err(internal)?;
            let new = new.to_pem().map_err(internal)?;
            // Same subject, so same subject serial.
            tx.set_cert(
                &prefix,
                &String::from_utf8_lossy(&new),
                pcert::subject_serial(&cert).ok(),
            )?;
            tracing::info!("renewed {}", prefix.to_subnet());
            Ok(new)
        })?;
        // No wake-up for the cleanup task: the prefix's certificate now
        // expires later than the one the task last saw.
        Ok(pem)
    }

    // --- network configuration ---

    /// Bumps the signed network version.
    fn bump_version(&self, tx: &Tx<'_>) -> Result<(), RpcError> {
        let old = tx.config_bytes("version")?.unwrap_or_else(|| vec![0]);
        let n = crypto::version_number(&old).map_err(internal)? + 1;
        let blob = crypto::sign_version(&self.ca.key, n).map_err(internal)?;
        tx.set_config("version", Value::Blob(blob))?;
        Ok(())
    }

    /// Compares the parameters with those last published and bumps the
    /// version when they differ; returns the prefix of the registry's node
    /// to notify.
    fn refresh_network_config(&self, tx: &Tx<'_>) -> Result<Option<Prefix>, RpcError> {
        let prefix = tx.config_text("prefix")?;
        let params = self
            .settings
            .params
            .to_json(&tx.crl_serials()?, prefix.as_deref());
        let text = python_json(&Json::Object(params));
        if tx.config_text("last_config")?.as_deref() == Some(text.as_str()) {
            return Ok(None);
        }
        self.bump_version(tx)?;
        tx.set_config("last_config", text)?;
        tracing::info!("network configuration changed: new version");
        Ok(prefix.and_then(|p| p.parse().ok()))
    }

    fn notify(&self, prefix: Option<Prefix>) {
        if let (Some(relay), Some(p)) = (&self.relay, prefix) {
            relay.notify_version(&p);
        }
    }

    fn network_config(&self, cn: &str) -> Result<Vec<u8>, RpcError> {
        let prefix = parse_bits(cn)?;
        let mut config = lock(&self.db).transaction(|tx| {
            let (_, cert) = Self::cert_of(tx, &prefix)?;
            let registry_prefix = tx.config_text("prefix")?;
            let mut m = self
                .settings
                .params
                .to_json(&tx.crl_serials()?, registry_prefix.as_deref());
            let version = tx.config_bytes("version")?.unwrap_or_else(|| vec![0]);
            m.insert(String::new(), Json::Array(vec!["version".into()]));
            m.insert("version".into(), B64.encode(version).into());
            let mut keys = HmacKeys::default();
            for (slot, name) in keys.0.iter_mut().zip(BABEL_HMAC) {
                *slot = tx.config_bytes(name)?;
            }
            let (sign, accept) = keys.sign_accept();
            for (name, key) in [("babel_hmac_sign", sign), ("babel_hmac_accept", accept)] {
                if let Some(key) = key {
                    let v = if key.is_empty() {
                        String::new()
                    } else {
                        B64.encode(crypto::encrypt_for(&cert, key).map_err(internal)?)
                    };
                    m.insert(name.into(), v.into());
                }
            }
            Ok::<_, RpcError>(m)
        })?;
        config.sort_keys();
        let json = serde_json::to_vec(&Json::Object(config)).map_err(internal)?;
        re6st_proto::netconfig::compress(&json).map_err(internal)
    }

    fn update_hmac(&self) -> Result<(), RpcError> {
        let fresh = self.random_vec(16);
        let prefix = lock(&self.db).transaction(|tx| {
            let mut keys = HmacKeys::default();
            for (slot, name) in keys.0.iter_mut().zip(BABEL_HMAC) {
                *slot = tx.config_bytes(name)?;
            }
            let next = keys.rotate(fresh);
            for (slot, name) in next.0.iter().zip(BABEL_HMAC) {
                match slot {
                    Some(k) => tx.set_config(name, Value::Blob(k.clone()))?,
                    None => tx.delete_config(name)?,
                }
            }
            self.bump_version(tx)?;
            Ok::<_, RpcError>(tx.config_text("prefix")?.and_then(|p| p.parse().ok()))
        })?;
        self.notify(prefix);
        Ok(())
    }

    // --- tokens ---

    /// Stores a token for `email`, generating one when `token` is None.
    fn store_token(&self, email: &str, token: Option<&str>) -> Result<String, RpcError> {
        if self.settings.prefix_length == 0 {
            return Err(RpcError::Forbidden);
        }
        let now = self.env.now();
        let mut draws = 0;
        let t = lock(&self.db).transaction(|tx| loop {
            let candidate = match token {
                Some(t) => t.to_owned(),
                None => {
                    let mut r = [0u8; 8];
                    self.env.random(&mut r);
                    mail::new_token(&r)
                }
            };
            let row = Token {
                token: candidate.clone(),
                email: email.to_owned(),
                prefix_len: self.settings.prefix_length,
                date: now,
            };
            if tx.insert_token(&row)? {
                return Ok(candidate);
            }
            // A given token that exists is a conflict; a generated one is
            // simply drawn again.
            if token.is_some() {
                return Err(RpcError::Conflict);
            }
            // 64 random bits collide only with a broken random source:
            // give up rather than spin with the database locked.
            draws += 1;
            if draws >= MAX_TOKEN_DRAWS {
                return Err(RpcError::Internal(format!(
                    "no unused token in {draws} draws"
                )));
            }
        })?;
        self.wake_cleanup(now + self.settings.grace_period);
        Ok(t)
    }

    fn add_token(&self, email: &str, token: &str) -> Result<Option<Vec<u8>>, RpcError> {
        if token.is_empty() {
            // Our extension: an empty token asks for a generated one.
            return self.store_token(email, None).map(|t| Some(t.into_bytes()));
        }
        self.store_token(email, Some(token)).map(|_| None)
    }

    fn request_token(&self, email: &str) -> Result<(), RpcError> {
        let Some(mailer) = &self.settings.mailer else {
            return Err(RpcError::Forbidden);
        };
        // Refuse what cannot be a mail header before storing anything.
        mail::token_message(None, email, "").map_err(|e| RpcError::BadRequest(e.to_string()))?;
        let token = self.store_token(email, None)?;
        let from = self.ca.email();
        // As upstream, an undelivered token stays in the database (its
        // operator can look it up and hand it over) and the caller gets
        // an internal error.
        mailer
            .send_token(from.as_deref(), email, &token, self.env.now())
            .map_err(|e| {
                internal(format!(
                    "token for {email} stored, but its mail could not be sent ({e}); \
                     it is in the token table of the database"
                ))
            })
    }

    // --- revocation and cleanup ---

    fn revoke(&self, cn_or_serial: &str) -> Result<(), RpcError> {
        let now = self.env.now();
        let bumped = lock(&self.db).transaction(|tx| {
            let cert = match cn_or_serial.trim().parse::<u128>() {
                Ok(serial) => tx
                    .cert_rows()?
                    .into_iter()
                    .filter_map(|r| X509::from_pem(r.cert.as_bytes()).ok())
                    .find(|c| pcert::serial(c).ok() == Some(serial))
                    .ok_or_else(|| {
                        RpcError::NotFound(format!("no certificate with serial {serial}"))
                    })?,
                Err(_) => {
                    let prefix = Prefix::from_subnet(cn_or_serial).map_err(|e| {
                        RpcError::BadRequest(format!(
                            "{cn_or_serial:?} is no serial or subnet: {e}"
                        ))
                    })?;
                    let pem = tx.cert(&prefix)?.filter(|c| c != RESERVED).ok_or_else(|| {
                        RpcError::NotFound(format!("no certificate for {cn_or_serial}"))
                    })?;
                    let cert = X509::from_pem(pem.as_bytes()).map_err(internal)?;
                    tx.clear_cert(&prefix)?;
                    lock(&self.sessions).forget(&prefix.to_string());
                    cert
                }
            };
            let not_after = pcert::not_after(&cert).map_err(internal)?;
            let serial =
                i64::try_from(pcert::serial(&cert).map_err(internal)?).map_err(internal)?;
            if now < not_after && tx.revoke(serial, not_after)? {
                tracing::warn!("revoked certificate {serial}");
                return self.refresh_network_config(tx);
            }
            Ok(None)
        })?;
        self.notify(bumped);
        Ok(())
    }

    /// Deletes tokens and certificates expired for longer than the grace
    /// period (freeing their prefixes) and revocations of expired
    /// certificates; returns when to run again.
    pub fn cleanup(&self) -> Result<Option<i64>, RpcError> {
        let now = self.env.now();
        let grace = self.settings.grace_period;
        let old = now - grace;
        let (next, bumped) = lock(&self.db).transaction(|tx| {
            let mut next: Option<i64> = None;
            let mut later = |t: i64| next = Some(next.map_or(t, |n: i64| n.min(t)));
            for (token, date) in tx.token_dates()? {
                if date <= old {
                    tx.delete_token(&token)?;
                } else {
                    later(date + grace);
                }
            }
            let registry_prefix = tx.config_text("prefix")?;
            for row in tx.cert_rows()? {
                let Ok(cert) = X509::from_pem(row.cert.as_bytes()) else {
                    continue;
                };
                let Ok(not_after) = pcert::not_after(&cert) else {
                    continue;
                };
                if not_after > old {
                    later(not_after + grace);
                } else if registry_prefix.as_deref() == Some(row.prefix.to_string().as_str()) {
                    tracing::error!(
                        "refusing to delete the certificate of the registry's own node \
                         (wrong clock?)"
                    );
                } else {
                    tracing::info!(
                        "deleting expired certificate {} ({})",
                        row.prefix.to_subnet(),
                        row.email.as_deref().unwrap_or("anonymous")
                    );
                    tx.clear_cert(&row.prefix)?;
                }
            }
            alloc::merge(tx)?;
            let bumped = if tx.purge_crl(now)? > 0 && tx.config_has("prefix")? {
                self.refresh_network_config(tx)?
            } else {
                None
            };
            Ok::<_, RpcError>((next, bumped))
        })?;
        self.notify(bumped);
        Ok(next)
    }

    /// Tells the cleanup task that something expires (grace period
    /// included) at `deadline`. Cleanup scans every certificate under the
    /// database lock: it must run when something is due, not at each
    /// change (run on every issued certificate, it made issuance
    /// quadratic).
    fn wake_cleanup(&self, deadline: i64) {
        let (m, c) = &self.cleanup_wake;
        let mut earliest = lock(m);
        if earliest.is_none_or(|e| deadline < e) {
            *earliest = Some(deadline);
            c.notify_all();
        }
    }

    /// Runs [`Self::cleanup`] whenever due, forever (a dedicated thread).
    pub fn cleanup_loop(&self) {
        loop {
            let mut due = match self.cleanup() {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("cleanup: {e}");
                    Some(self.env.now() + 60)
                }
            };
            let (m, c) = &self.cleanup_wake;
            let mut added = lock(m);
            // Until due (a day at most, as the clock may jump), moved
            // earlier by what is added meanwhile; a second at least.
            loop {
                if let Some(d) = added.take() {
                    due = Some(due.map_or(d, |n| n.min(d)));
                }
                let wait = due.map_or(86400, |n| (n - self.env.now()).clamp(1, 86400));
                let (g, timeout) = c
                    .wait_timeout_while(added, std::time::Duration::from_secs(wait as u64), |a| {
                        a.is_none()
                    })
                    .unwrap_or_else(|e| e.into_inner());
                added = g;
                if timeout.timed_out() {
                    break;
                }
            }
        }
    }

    // --- lookups by e-mail ---

    fn node_prefix(&self, email: &str) -> Result<Option<Prefix>, RpcError> {
        let pem = lock(&self.db).transaction(|tx| tx.cert_by_email(email))?;
        let Some(pem) = pem else { return Ok(None) };
        let cert = X509::from_pem(pem.as_bytes()).map_err(internal)?;
        Ok(Some(pcert::node_prefix(&cert).map_err(internal)?))
    }

    fn ipv6_address(&self, email: &str) -> Result<Option<Vec<u8>>, RpcError> {
        let Some(p) = self.node_prefix(email)? else {
            return Ok(None);
        };
        let full = self.ca.network.concat(&p).map_err(internal)?;
        Ok(Some(full.to_ipv6().to_string().into_bytes()))
    }

    fn country(&self, address: &str) -> Result<Option<Vec<u8>>, RpcError> {
        let geoip = self
            .geoip
            .as_ref()
            .ok_or_else(|| RpcError::BadRequest("no GeoIP database".into()))?;
        let (country, _) = geoip.lookup(address);
        Ok((country != UNKNOWN).then(|| country.into_bytes()))
    }

    // --- through the local node ---

    fn relay(&self) -> Result<&Relay, RpcError> {
        self.relay
            .as_ref()
            .ok_or_else(|| internal("no relay to the local node"))
    }

    fn registry_prefix(&self) -> Result<Option<Prefix>, RpcError> {
        let p = lock(&self.db).transaction(|tx| tx.config_text("prefix"))?;
        Ok(p.and_then(|p| p.parse().ok()))
    }

    /// What keeps the registry from serving bootstrap peers, as log
    /// lines saying what to do (checked at start-up: nothing slow).
    pub fn bootstrap_problems(&self) -> Result<Vec<String>, RpcError> {
        let mut out = vec![];
        if self.registry_prefix()?.is_none() {
            out.push(format!("cannot serve bootstrap peers yet: {NO_NODE_HINT}"));
        }
        if let Err(e) = self.peers.peers() {
            out.push(format!(
                "bootstrap peers limited to the registry's own node: {e}"
            ));
        }
        Ok(out)
    }

    fn bootstrap_peer(&self, cn: &str) -> Result<Option<Vec<u8>>, RpcError> {
        let relay = self.relay()?;
        let Some(own) = self.registry_prefix()? else {
            tracing::warn!("getBootstrapPeer from {cn}: no peer to give: {NO_NODE_HINT}");
            return Ok(None);
        };
        let peer = {
            let mut cache = lock(&self.bootstrap);
            let now = self.env.now();
            if cache.0 < now || cache.1.is_empty() {
                let mut peers = self.peers.peers().unwrap_or_else(|e| {
                    tracing::warn!(
                        "getBootstrapPeer from {cn}: only the registry's own node \
                         can be given: {e}"
                    );
                    vec![]
                });
                peers.push(own);
                // Shuffle (Fisher-Yates) so that load spreads over nodes.
                for i in (1..peers.len()).rev() {
                    let mut r = [0u8; 4];
                    self.env.random(&mut r);
                    peers.swap(i, u32::from_be_bytes(r) as usize % (i + 1));
                }
                *cache = (now + BOOTSTRAP_CACHE_SECS, peers);
            }
            match cache.1.pop() {
                Some(p) if p.to_string() != cn => p,
                _ => own,
            }
        };
        let Some(mut msg) = relay.query_address(&peer) else {
            if peer == own {
                tracing::warn!(
                    "getBootstrapPeer from {cn}: no peer to give: the registry's own node \
                     ({}) does not answer on {}: run it on the registry's host",
                    own.to_subnet(),
                    relay.node()
                );
            } else {
                tracing::info!("no address for {}", peer.to_subnet());
            }
            return Ok(None);
        };
        let protocol = lock(&self.sessions).protocol(cn).unwrap_or(0);
        if protocol < 7 {
            // Old nodes do not understand the country field.
            msg = msg
                .split(';')
                .map(|a| a.split(',').take(3).collect::<Vec<_>>().join(","))
                .collect::<Vec<_>>()
                .join(";");
        }
        let cn_prefix = parse_bits(cn)?;
        let (_, cert) = lock(&self.db).transaction(|tx| Self::cert_of(tx, &cn_prefix))?;
        let text = format!("{peer} {msg}");
        Ok(Some(
            crypto::encrypt_for(&cert, text.as_bytes()).map_err(internal)?,
        ))
    }

    fn ipv4_information(&self, email: &str) -> Result<Option<Vec<u8>>, RpcError> {
        let Some(p) = self.node_prefix(email)? else {
            return Ok(None);
        };
        let relay = self.relay()?;
        let peers = self.peers.peers().unwrap_or_else(|e| {
            tracing::warn!("getIPv4Information: {e}");
            vec![]
        });
        if !peers.contains(&p) {
            return Ok(None);
        }
        Ok(relay
            .query_address(&p)
            .and_then(|m| m.split(',').next().map(|ip| ip.as_bytes().to_vec()))
            .filter(|v| !v.is_empty()))
    }

    fn versions(&self) -> Result<Option<Vec<u8>>, RpcError> {
        let relay = self.relay()?;
        let peers = self.peers.peers().unwrap_or_else(|e| {
            tracing::warn!("versions: only the registry's own node is asked: {e}");
            vec![]
        });
        let mut peers: BTreeSet<Prefix> = peers.into_iter().collect();
        if let Some(own) = self.registry_prefix()? {
            peers.insert(own);
        }
        let answers = relay.versions(&peers);
        let map: serde_json::Map<String, Json> = answers
            .into_iter()
            .map(|(p, v)| (p.to_string(), v.map_or(Json::Null, Json::from)))
            .collect();
        Ok(Some(serde_json::to_vec(&map).map_err(internal)?))
    }

    fn topology(&self) -> Result<Option<Vec<u8>>, RpcError> {
        let relay = self.relay()?;
        // No node yet: an empty network, as when no node answers.
        let Some(own) = self.registry_prefix()? else {
            tracing::info!("topology: the registry has no node yet");
            return Ok(Some(b"{}".to_vec()));
        };
        let mut graph = relay.topology(&own);
        // The registry's node first, as in upstream's answer (its node's
        // answer is the first one upstream's registry records): that is how
        // a reader (`re6st ctl topology`) tells which node is the registry's.
        let first = graph.remove_entry(&own.to_subnet());
        let mut body = Vec::from(&b"{"[..]);
        for (i, (node, peers)) in first.into_iter().chain(graph).enumerate() {
            if i > 0 {
                body.push(b',');
            }
            serde_json::to_writer(&mut body, &node).map_err(internal)?;
            body.push(b':');
            serde_json::to_writer(&mut body, &peers).map_err(internal)?;
        }
        body.push(b'}');
        Ok(Some(body))
    }
}
