//! The HTTP shell around [`Registry`]: GET requests only, each handled
//! on the blocking pool (the registry does SQLite and RSA work), plain or
//! over TLS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
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

use crate::registry::{Registry, Reply, Request, HMAC_HEADER};

/// Longest request target accepted (as upstream's HTTP server).
pub const MAX_TARGET: usize = 65536;

/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 512;

/// Time allowed to send request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

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
    if req.method() != Method::GET {
        return Ok(plain(501));
    }
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    if target.len() > MAX_TARGET {
        return Ok(plain(414));
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let hmac = header(HMAC_HEADER);
    let forwarded_for = header("x-forwarded-for");
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
    Ok(response(reply))
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

async fn connection<S>(registry: Arc<Registry>, peer: SocketAddr, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| serve(registry.clone(), peer, req));
    let result = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
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
pub async fn run(listener: TcpListener, registry: Arc<Registry>, tls: Option<Arc<SslAcceptor>>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
        let registry = registry.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => connection(registry, peer, stream).await,
                Some(acceptor) => {
                    let Ok(ssl) = Ssl::new(acceptor.context()) else {
                        return;
                    };
                    let Ok(mut s) = tokio_openssl::SslStream::new(ssl, stream) else {
                        return;
                    };
                    let handshake =
                        tokio::time::timeout(HEADER_TIMEOUT, Pin::new(&mut s).accept()).await;
                    match handshake {
                        Ok(Ok(())) => connection(registry, peer, s).await,
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
