//! One HTTP/1.1 GET to the registry, over TCP or TLS, with a deadline and a
//! bound on the response size (a registry is trusted for certificates, not
//! for our memory).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslMethod};
use thiserror::Error;
use tokio::net::TcpStream;

/// Largest body we accept: a network configuration or a certificate is a
/// few KiB; DH parameters and CRL-heavy configurations stay far below this.
pub const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("invalid registry URL {0:?}: {1}")]
    BadUrl(String, &'static str),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("response body too large or unreadable: {0}")]
    Body(String),
    #[error("registry did not answer within {0:?}")]
    Timeout(Duration),
}

/// A parsed `http://` or `https://` registry URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUrl {
    pub tls: bool,
    /// `host:port` as written, brackets kept for IPv6 literals.
    pub authority: String,
    /// Host name without brackets (for TLS SNI and verification).
    pub host: String,
    pub port: u16,
    /// Path prefix without trailing slash (`""` for the root).
    pub path: String,
}

impl RegistryUrl {
    pub fn parse(url: &str) -> Result<Self, TransportError> {
        let bad = |why| TransportError::BadUrl(url.to_owned(), why);
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(bad("scheme must be http or https"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("missing host"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("garbage after ']'")),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad("bad port"))?),
                None => (authority.to_owned(), default_port),
            }
        };
        Ok(RegistryUrl {
            tls,
            authority: authority.to_owned(),
            host,
            port,
            path: path.trim_end_matches('/').to_owned(),
        })
    }
}

/// What the registry answered.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn connect(url: &RegistryUrl) -> Result<Box<dyn Io>, TransportError> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| TransportError::Connect(url.authority.clone(), e))?;
    tcp.set_nodelay(true).ok();
    if !url.tls {
        return Ok(Box::new(tcp));
    }
    let tls_err = |e: &dyn std::fmt::Display| TransportError::Tls(e.to_string());
    let connector = SslConnector::builder(SslMethod::tls_client())
        .map_err(|e| tls_err(&e))?
        .build();
    let ssl = connector
        .configure()
        .and_then(|c| c.into_ssl(&url.host))
        .map_err(|e| tls_err(&e))?;
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| tls_err(&e))?;
    std::pin::Pin::new(&mut stream)
        .connect()
        .await
        .map_err(|e| tls_err(&e))?;
    Ok(Box::new(stream))
}

/// GETs `path_and_query` (appended to the URL's path) with extra headers.
pub async fn get(
    url: &RegistryUrl,
    path_and_query: &str,
    headers: &[(HeaderName, HeaderValue)],
    timeout: Duration,
) -> Result<Response, TransportError> {
    tokio::time::timeout(timeout, get_inner(url, path_and_query, headers))
        .await
        .map_err(|_| TransportError::Timeout(timeout))?
}

async fn get_inner(
    url: &RegistryUrl,
    path_and_query: &str,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<Response, TransportError> {
    let io = connect(url).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let conn_task = tokio::spawn(conn);
    let mut req = Request::get(format!("{}{}", url.path, path_and_query))
        .header(hyper::header::HOST, url.authority.as_str())
        .header(
            hyper::header::USER_AGENT,
            concat!("re6st-rs/", env!("CARGO_PKG_VERSION")),
        );
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new())?)
        .await?;
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| TransportError::Body(e.to_string()))?
        .to_bytes();
    conn_task.abort();
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = RegistryUrl::parse("http://198.18.0.1:9080/").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (false, "198.18.0.1", 9080, "")
        );
        let u = RegistryUrl::parse("https://[2001:db8::1]/re6st/").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "2001:db8::1", 443, "/re6st")
        );
        assert_eq!(u.authority, "[2001:db8::1]");
        let u = RegistryUrl::parse("http://registry").unwrap();
        assert_eq!(u.port, 80);
        for bad in [
            "ftp://x",
            "http://",
            "http://h:x/",
            "http://[::1/",
            "http://[::1]x/",
        ] {
            assert!(RegistryUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn get_over_loopback_bounds_body() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for body_len in [5usize, MAX_BODY + 1] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\nX-Echo: {}\r\n\r\n",
                    req.lines().next().unwrap_or_default()
                );
                s.write_all(head.as_bytes()).await.unwrap();
                s.write_all(&vec![b'a'; body_len]).await.ok();
            }
        });
        let url = RegistryUrl::parse(&format!("http://127.0.0.1:{port}/base/")).unwrap();
        let r = get(&url, "/getCa", &[], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], b"aaaaa");
        assert_eq!(r.headers["x-echo"], "GET /base/getCa HTTP/1.1");
        assert!(matches!(
            get(&url, "/big", &[], Duration::from_secs(5)).await,
            Err(TransportError::Body(_))
        ));
        server.await.unwrap();
    }
}
