//! The registry's RPC: request targets, and the authenticated session
//! (upstream `RegistryClient` and `RegistryServer.handle_request`).
//!
//! # Wire format
//!
//! ```text
//! hello:   C -> S  GET /hello?client_prefix=CN&protocol=P
//!          S -> C  X || sign(CA key, X)        X = encrypt(client cert, secret)
//! call:    C -> S  GET /method?cn=CN&...       Re6stHMAC: b64(HMAC(k, "/method?cn=CN&..."))
//!          S -> C  body                        Re6stHMAC: b64(HMAC(sha1(k), body))
//! then     k <- sha1(sha1(k)): a captured request cannot be replayed.
//! ```
//!
//! `secret` is 20 random bytes; HMACs are HMAC-SHA1; RSA is PKCS#1 v1.5
//! (signatures over SHA-512). The HMAC covers `/method?query` exactly as
//! sent, without the path of the registry's URL: upstream's server checks
//! the path it receives, so a registry under a URL path must sit behind a
//! proxy that strips it. A 204 answer is authenticated as an empty body.
//!
//! The query is Python's `urlencode` of *every* parameter, defaults
//! included, in declaration order (see [`request_target`]):
//!
//! | method | parameters (default) | access |
//! |---|---|---|
//! | `hello` | `client_prefix`, `protocol` (`"1"`) | open |
//! | `requestToken` | `email` | open |
//! | `requestCertificate` | `token`, `req`, `location` (`""`), `ip` (`""`) | open |
//! | `getCa` | | open |
//! | `renewCertificate` | `cn` | session |
//! | `getDh` | `cn` | session |
//! | `getNetworkConfig` | `cn` | session |
//! | `getCountry` | `cn`, `address` | session |
//! | `getBootstrapPeer` | `cn` | session |
//! | `revoke` | `cn_or_serial` | private |
//! | `addToken` | `email`, `token` | private |
//! | `isToken`, `deleteToken` | `token` | private |
//! | `getNodePrefix`, `getIPv6Address`, `getIPv4Information` | `email` | private |
//! | `updateHMAC`, `versions`, `topology` | | private |
//!
//! "session" methods are those with a `cn` parameter (the client's prefix
//! as a bit string); "private" ones are limited to authorized origins.
//! Upstream's server replaces an empty `ip` of `requestCertificate` by the
//! client's address. [`Rpc`] holds this table.
//!
//! # Client side (the node)
//!
//! ```text
//! let mut s = ClientSession::default();
//! if s.needs_hello() {
//!     let answer = GET(hello_target(my_prefix, PROTOCOL)?);   // no HMAC
//!     s.accept_hello(&answer, &ca, &my_key)?;                 // checks the CA signature
//! }
//! let target = request_target(Rpc::GetNetworkConfig, &[("cn", my_prefix)])?;
//! let signed = s.sign(&target)?;                              // ratchets
//! let (status, body, mac) = GET(target, Re6stHMAC: signed.header);
//! s.verify_response(&signed, &body, mac)?;                    // resets on failure
//! ```
//!
//! Any failed call (transport error, status other than 200/204, bad HMAC)
//! must [`ClientSession::reset`] the session; like upstream, retry once
//! with a fresh `hello` when the failed call used an older key.
//!
//! # Server side (the registry)
//!
//! ```text
//! let req = parse_target(target)?;                            // 400 on error
//! match req.rpc {
//!     Rpc::Hello => sessions.answer_hello(client_prefix, protocol,
//!                                         &client_cert, &ca_key, &random_20_bytes)?,
//!     _ if let Some(cn) = req.session() => {
//!         let auth = sessions.authenticate_header(cn, target, header)?;  // 400 on error
//!         ... body ...;  Re6stHMAC: auth.response_header(&body)?
//!     }
//! }
//! ```
//!
//! [`Sessions`] keeps upstream's two keys per client: the one of the session
//! in use, and the one of the latest `hello`. So a `hello` sent by somebody
//! else for a client's prefix cannot break that client's session, and the
//! first successful call drops the other key.
//!
//! Both sides are plain state: the caller supplies the random secret and
//! does the HTTP.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use thiserror::Error;

use crate::crypto::{hmac_sha1, CryptoError};

mod client;
mod methods;
mod query;
mod server;

pub use client::{hello_target, ClientSession, SignedRequest};
pub use methods::{Access, Param, Rpc, SESSION_PARAM};
pub use query::{form_decode, form_encode, parse_target, request_target, Request, TargetError};
pub use server::{hello_response, Authenticated, Sessions};

/// HTTP header carrying the HMACs, base64-encoded.
pub const HMAC_HEADER: &str = "Re6stHMAC";

/// Certificates are renewed this long before they expire (30 days).
pub const RENEW_PERIOD: i64 = 30 * 86400;

/// Length of a session secret and of every key derived from it (SHA-1).
pub const KEY_LEN: usize = 20;

/// Length of an HMAC-SHA1.
pub const MAC_LEN: usize = 20;

/// A session secret or a key ratcheted from it.
pub type SessionKey = [u8; KEY_LEN];

#[derive(Debug, Error)]
pub enum RpcError {
    #[error("no session for this client")]
    NoSession,
    #[error("wrong HMAC")]
    WrongHmac,
    #[error("missing or malformed {HMAC_HEADER} header")]
    BadHeader,
    #[error("hello answer is malformed")]
    BadHello,
    #[error("hello answer is not signed by the CA")]
    HelloNotSigned,
    #[error("session secret has the wrong length ({0} bytes)")]
    BadSecret(usize),
    #[error("client key ({client} bytes) and CA key ({ca} bytes) differ in size")]
    KeySizeMismatch { client: usize, ca: usize },
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

/// The `Re6stHMAC` header of an answer: HMAC of `body` with the response key.
pub fn response_header(response_key: &[u8], body: &[u8]) -> Result<String, RpcError> {
    Ok(B64.encode(hmac_sha1(response_key, body)?))
}

/// Decodes a `Re6stHMAC` header value (surrounding whitespace allowed).
pub fn decode_header(value: &[u8]) -> Result<[u8; MAC_LEN], RpcError> {
    let raw = B64
        .decode(value.trim_ascii())
        .map_err(|_| RpcError::BadHeader)?;
    raw.try_into().map_err(|_| RpcError::BadHeader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip() {
        let h = response_header(&[3; 20], b"body").unwrap();
        assert_eq!(
            decode_header(format!(" {h}\r\n").as_bytes()).unwrap(),
            hmac_sha1(&[3; 20], b"body").unwrap()
        );
        assert!(decode_header(b"AAAA").is_err());
        assert!(decode_header(b"").is_err());
    }

    proptest! {
        #[test]
        fn header_decoding_never_panics(v in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_header(&v);
        }

        #[test]
        fn headers_decode_to_their_mac(key in any::<[u8; 20]>(),
                                       body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let h = response_header(&key, &body).unwrap();
            prop_assert_eq!(decode_header(h.as_bytes()).unwrap(), hmac_sha1(&key, &body).unwrap());
        }
    }
}
