//! The HTTP shell around [`Registry`]: GET requests only, each handled
//! on the blocking pool (the registry does SQLite and RSA work), plain or
//! over TLS; `/metrics` (Prometheus) for authorized origins.
//!
//! Facing the internet: one source address (an IPv4 address or an IPv6
//! /64) holds at most [`Limits::per_source`] connections, more are closed
//! as soon as accepted; a client has [`Limits::header_timeout`] to send
//! its request header (or finish the TLS handshake), and an idle
//! keep-alive connection is closed after as long. So one client stuck in
//! the middle of its requests, however many, cannot take the connection
//! slots every other client needs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics;
use crate::registry::{Registry, Reply, Request, HMAC_HEADER};

/// Longest request target accepted (as upstream's HTTP server).
pub const MAX_TARGET: usize = 65536;

/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 512;

/// Default of [`Limits::per_source`]: far more than a node needs (its
/// calls are sequential), and enough for a few dozen nodes behind one
/// NAT address starting at once.
pub const PER_SOURCE: usize = 20;

/// Default of [`Limits::header_timeout`]: a request header is a few
/// hundred bytes, which even a slow link sends in well under a second.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What one client may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once from one source address (an IPv4 address
    /// or an IPv6 /64); 0: no limit (e.g. behind a reverse proxy, where
    /// every connection comes from the proxy).
    pub per_source: usize,
    /// Time to send a request header, to finish the TLS handshake, or to
    /// start the next request on a kept-alive connection.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_source: PER_SOURCE,
            header_timeout: HEADER_TIMEOUT,
        }
    }
}

/// The address a per-source limit counts by: an IPv6 host usually has a
/// whole /64 to draw addresses from.
fn source_of(ip: IpAddr) -> IpAddr {
    match crate::registry::canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Connections open per source, and whether its refusal was logged.
#[derive(Default)]
struct Sources(Mutex<HashMap<IpAddr, (usize, bool)>>);

/// A connection counted against its source until dropped.
struct SourceSlot {
    sources: Arc<Sources>,
    source: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self.sources.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(&self.source) {
            e.0 -= 1;
            if e.0 == 0 {
                map.remove(&self.source);
            }
        }
    }
}

impl Sources {
    /// A slot for `source`, or None when it holds `max` already.
    fn enter(self: &Arc<Self>, source: IpAddr, max: usize) -> Option<SourceSlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(source).or_insert((0, false));
        if max != 0 && e.0 >= max {
            // Once per episode: a flood would flood the log too.
            if !e.1 {
                e.1 = true;
                tracing::warn!(
                    "{source} holds {max} connections: closing its new ones \
                     (see --max-connections-per-source)"
                );
            }
            return None;
        }
        e.0 += 1;
        Some(SourceSlot {
            sources: self.clone(),
            source,
        })
    }
}

fn response(reply: Reply) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let has_body = !reply.body.is_empty();
    let mut r = Response::new(Full::new(Bytes::from(reply.body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if has_body || status == StatusCode::OK {
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    if let Some(mac) = reply.hmac.and_then(|m| HeaderValue::from_str(&m).ok()) {
        h.insert(HMAC_HEADER, mac);
    }
    r
}

fn plain(status: u16) -> Response<Full<Bytes>> {
    response(Reply::error(status))
}

async fn serve(
    registry: Arc<Registry>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let arrived = std::time::Instant::now();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let slot = metrics::slot_of(&target);
    let r = answer(registry.clone(), peer, req, target).await;
    registry
        .http_metrics()
        .record(slot, r.status().as_u16(), arrived.elapsed());
    Ok(r)
}

async fn answer(
    registry: Arc<Registry>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
    target: String,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return plain(501);
    }
    if target.len() > MAX_TARGET {
        return plain(414);
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let hmac = header(HMAC_HEADER);
    let forwarded_for = header("x-forwarded-for");
    if req.uri().path() == "/metrics" {
        return metrics_page(registry, peer, forwarded_for).await;
    }
    let reply = tokio::task::spawn_blocking(move || {
        registry.handle(&Request {
            target: &target,
            hmac: hmac.as_deref(),
            client: peer.ip(),
            forwarded_for: forwarded_for.as_deref(),
        })
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!("request handler failed: {e}");
        Reply::error(500)
    });
    response(reply)
}

/// `/metrics`, for authorized origins only (as private methods).
async fn metrics_page(
    registry: Arc<Registry>,
    peer: SocketAddr,
    forwarded_for: Option<String>,
) -> Response<Full<Bytes>> {
    if !registry.is_authorized_origin(peer.ip(), forwarded_for.as_deref()) {
        tracing::warn!("/metrics: forbidden for {} ({forwarded_for:?})", peer.ip());
        return plain(403);
    }
    // The certificate count is a database query: off the event loop.
    let text = tokio::task::spawn_blocking(move || {
        let certificates = registry
            .certificate_count()
            .map_err(|e| tracing::warn!("/metrics: {e}"))
            .ok();
        registry.http_metrics().render(certificates)
    })
    .await;
    let Ok(text) = text else {
        return plain(500);
    };
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// TLS settings for HTTPS.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<SslAcceptor, openssl::error::ErrorStack> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_certificate_chain_file(cert)?;
    b.set_private_key_file(key, SslFiletype::PEM)?;
    b.check_private_key()?;
    Ok(b.build())
}

async fn connection<S>(registry: Arc<Registry>, peer: SocketAddr, io: S, limits: Limits)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| serve(registry.clone(), peer, req));
    let result = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Big enough for the longest accepted target and some headers,
        // so that hyper rejects anything larger itself.
        .max_buf_size(MAX_TARGET + 16384)
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = result {
        tracing::debug!("connection from {peer}: {e}");
    }
}

/// Serves requests from `listener` until the task is dropped.
pub async fn run(
    listener: TcpListener,
    registry: Arc<Registry>,
    tls: Option<Arc<SslAcceptor>>,
    limits: Limits,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let sources = Arc::new(Sources::default());
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // E.g. out of file descriptors: wait instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over its source's limit: closed (dropped) before any work.
        let Some(source_slot) = sources.enter(source_of(peer.ip()), limits.per_source) else {
            continue;
        };
        let registry = registry.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slots = (permit, source_slot);
            match tls {
                None => connection(registry, peer, stream, limits).await,
                Some(acceptor) => {
                    let Ok(ssl) = Ssl::new(acceptor.context()) else {
                        return;
                    };
                    let Ok(mut s) = tokio_openssl::SslStream::new(ssl, stream) else {
                        return;
                    };
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, Pin::new(&mut s).accept())
                            .await;
                    match handshake {
                        Ok(Ok(())) => connection(registry, peer, s, limits).await,
                        _ => tracing::debug!("TLS handshake with {peer} failed"),
                    }
                }
            }
        });
    }
}

/// A listening socket; IPv6 ones are IPv6-only so that an IPv4 listener
/// can share the port.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_ipv4_addresses_or_ipv6_slash_64s() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(source_of(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_ne!(source_of(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
    }

    #[test]
    fn a_source_gets_its_limit_and_its_slots_back() {
        let sources = Arc::new(Sources::default());
        let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let held: Vec<_> = (0..3).map(|_| sources.enter(a, 3).unwrap()).collect();
        assert!(sources.enter(a, 3).is_none());
        assert!(sources.enter(b, 3).is_some());
        drop(held);
        assert!(sources.0.lock().unwrap().is_empty());
        assert!(sources.enter(a, 3).is_some());
        // 0: no limit.
        let many: Vec<_> = (0..100).map(|_| sources.enter(b, 0)).collect();
        assert!(many.iter().all(Option::is_some));
    }
}
