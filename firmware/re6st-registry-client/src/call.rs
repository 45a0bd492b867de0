//! One RPC call: the method name as path, arguments as an
//! `application/x-www-form-urlencoded` query in upstream's parameter order.

use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use thiserror::Error;

use crate::transport::{self, RegistryUrl, TransportError};

#[derive(Debug, Error)]
pub enum CallError {
    #[error("registry: {0}")]
    Transport(#[from] TransportError),
    #[error("registry refused {0} (403 Forbidden): registration may be disabled")]
    Forbidden(String),
    #[error("registry answered {1} to {0}")]
    Status(String, StatusCode),
    #[error("registry answer to {0} failed authentication")]
    BadHmac(String),
}

/// Percent-encodes like Python's `urllib.parse.quote_plus` (what upstream's
/// client uses): unreserved characters stay, space becomes `+`.
pub fn form_encode(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
}

/// `/method?k1=v1&k2=v2` (no `?` without arguments).
pub fn path_and_query(method: &str, args: &[(&str, &str)]) -> String {
    let mut q = format!("/{method}");
    for (i, (k, v)) in args.iter().enumerate() {
        q.push(if i == 0 { '?' } else { '&' });
        form_encode(k, &mut q);
        q.push('=');
        form_encode(v, &mut q);
    }
    q
}

/// Maps the status of an answer: `Some(body)` for 200, `None` for 204.
pub fn answer(method: &str, status: StatusCode, body: Bytes) -> Result<Option<Bytes>, CallError> {
    match status {
        StatusCode::OK => Ok(Some(body)),
        StatusCode::NO_CONTENT => Ok(None),
        StatusCode::FORBIDDEN => Err(CallError::Forbidden(method.to_owned())),
        s => Err(CallError::Status(method.to_owned(), s)),
    }
}

/// Calls a method that needs no session (`getCa`, `requestCertificate`, ...).
pub async fn unauthenticated(
    url: &RegistryUrl,
    method: &str,
    args: &[(&str, &str)],
    timeout: Duration,
) -> Result<Option<Bytes>, CallError> {
    let r = transport::get(url, &path_and_query(method, args), &[], timeout).await?;
    answer(method, r.status, r.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_quote_plus() {
        assert_eq!(path_and_query("getCa", &[]), "/getCa");
        assert_eq!(
            path_and_query(
                "requestCertificate",
                &[
                    ("token", ""),
                    ("req", "-----BEGIN X/Y+Z=\n"),
                    ("ip", "a b~")
                ]
            ),
            "/requestCertificate?token=&req=-----BEGIN+X%2FY%2BZ%3D%0A&ip=a+b~"
        );
        let mut s = String::new();
        form_encode("é", &mut s);
        assert_eq!(s, "%C3%A9");
    }
}
