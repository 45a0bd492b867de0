//! The registry's authenticated RPC session (upstream `RegistryClient` and
//! `RegistryServer.handle_request`).
//!
//! ```text
//! hello:   C -> S  /hello?client_prefix=CN&protocol=P
//!          S -> C  X = encrypt(client cert, secret) || sign(CA key, X)
//! call:    C -> S  /method?cn=CN&...   header Re6stHMAC: b64(HMAC(k, path?query))
//!          S -> C  body                header Re6stHMAC: b64(HMAC(sha1(k), body))
//! next call uses k' = sha1(sha1(k)): a captured request cannot be replayed.
//! ```
//!
//! The server keeps two keys per client, the last one really used and the
//! one of the latest `hello`, so a `hello` sent by somebody else for a
//! client's prefix cannot break that client's session.
//!
//! Both sides are plain state: the caller supplies the random secret and
//! does the HTTP.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::pkey::{PKeyRef, Private};
use openssl::x509::X509Ref;
use thiserror::Error;

use crate::crypto::{self, hmac_sha1, mac_eq, sha1, CryptoError};

/// HTTP header carrying the HMACs, base64-encoded.
pub const HMAC_HEADER: &str = "Re6stHMAC";

/// Certificates are renewed this long before they expire (30 days).
pub const RENEW_PERIOD: i64 = 30 * 86400;

/// Length of a session key.
pub const KEY_LEN: usize = 20;

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
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

/// HMAC of a response body, as the `Re6stHMAC` header value.
pub fn response_header(response_key: &[u8; KEY_LEN], body: &[u8]) -> Result<String, RpcError> {
    Ok(B64.encode(hmac_sha1(response_key, body)?))
}

/// Decodes a `Re6stHMAC` header value.
pub fn decode_header(value: &[u8]) -> Result<[u8; 20], RpcError> {
    let raw = B64.decode(value).map_err(|_| RpcError::BadHeader)?;
    raw.try_into().map_err(|_| RpcError::BadHeader)
}

/// Server side: the `hello` answer for a client, `secret` being fresh
/// random bytes the caller also records with [`Sessions::hello`].
pub fn hello_response(
    client_cert: &X509Ref,
    ca_key: &PKeyRef<Private>,
    secret: &[u8; KEY_LEN],
) -> Result<Vec<u8>, RpcError> {
    let mut x = crypto::encrypt_for(client_cert, secret)?;
    let signature = crypto::sign(ca_key, &x)?;
    // The client splits in the middle: both halves have the key's size.
    x.extend_from_slice(&signature);
    Ok(x)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionKey {
    key: Vec<u8>,
    protocol: u32,
}

/// A successful authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Key of the response's HMAC.
    pub response_key: [u8; KEY_LEN],
    /// Protocol the client announced in its `hello`.
    pub protocol: u32,
}

/// Server side: the sessions of every client, by client prefix (bit string).
#[derive(Debug, Default)]
pub struct Sessions {
    by_client: HashMap<String, Vec<SessionKey>>,
}

impl Sessions {
    /// Records the secret of a new `hello`, keeping the last used key.
    pub fn hello(&mut self, client: &str, secret: &[u8; KEY_LEN], protocol: u32) {
        let keys = self.by_client.entry(client.to_owned()).or_default();
        keys.truncate(1);
        keys.push(SessionKey {
            key: secret.to_vec(),
            protocol,
        });
    }

    /// Checks the HMAC of a request target (`/method?query`); on success
    /// the session moves on to the next key and the hello key is dropped.
    pub fn authenticate(
        &mut self,
        client: &str,
        target: &[u8],
        mac: &[u8],
    ) -> Result<Authenticated, RpcError> {
        let keys = self.by_client.get_mut(client).ok_or(RpcError::NoSession)?;
        for k in keys.iter() {
            if mac_eq(&hmac_sha1(&k.key, target)?, mac) {
                let response_key = sha1(&k.key)?;
                let protocol = k.protocol;
                *keys = vec![SessionKey {
                    key: sha1(&response_key)?.to_vec(),
                    protocol,
                }];
                return Ok(Authenticated {
                    response_key,
                    protocol,
                });
            }
        }
        Err(RpcError::WrongHmac)
    }

    /// Protocol of a client's current session.
    pub fn protocol(&self, client: &str) -> Option<u32> {
        self.by_client.get(client)?.first().map(|k| k.protocol)
    }

    /// Drops a client's session (e.g. when it is revoked).
    pub fn forget(&mut self, client: &str) {
        self.by_client.remove(client);
    }
}

/// Client side: the key of the session with the registry, if any.
#[derive(Debug, Default, Clone)]
pub struct ClientSession {
    key: Option<[u8; KEY_LEN]>,
}

/// What a signed request needs: the header value to send and the key to
/// check the answer with.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub header: String,
    pub response_key: [u8; KEY_LEN],
}

impl ClientSession {
    /// Whether the next authenticated call must be preceded by `hello`.
    pub fn needs_hello(&self) -> bool {
        self.key.is_none()
    }

    /// Takes the secret out of a `hello` answer: checks the CA's signature
    /// of the encrypted half and decrypts it with our key.
    pub fn accept_hello(
        &mut self,
        answer: &[u8],
        ca: &X509Ref,
        our_key: &PKeyRef<Private>,
    ) -> Result<(), RpcError> {
        if answer.is_empty() || !answer.len().is_multiple_of(2) {
            return Err(RpcError::BadHello);
        }
        let (encrypted, signature) = answer.split_at(answer.len() / 2);
        crypto::verify(ca, signature, encrypted).map_err(|_| RpcError::HelloNotSigned)?;
        let secret = crypto::decrypt(our_key, encrypted).map_err(|_| RpcError::BadHello)?;
        let key: [u8; KEY_LEN] = secret
            .as_slice()
            .try_into()
            .map_err(|_| RpcError::BadSecret(secret.len()))?;
        self.key = Some(key);
        Ok(())
    }

    /// Signs a request target (`/method?query`, without the URL's path
    /// prefix) and ratchets the key.
    pub fn sign(&mut self, target: &str) -> Result<SignedRequest, RpcError> {
        let key = self.key.ok_or(RpcError::NoSession)?;
        let mac = hmac_sha1(&key, target.as_bytes())?;
        let response_key = sha1(&key)?;
        self.key = Some(sha1(&response_key)?);
        Ok(SignedRequest {
            header: B64.encode(mac),
            response_key,
        })
    }

    /// Checks the HMAC header of an answer. On failure the session is
    /// dropped, so that the next call starts with `hello`.
    pub fn verify_response(
        &mut self,
        request: &SignedRequest,
        body: &[u8],
        header: Option<&[u8]>,
    ) -> Result<(), RpcError> {
        let ok = match header.map(decode_header) {
            Some(Ok(mac)) => mac_eq(&hmac_sha1(&request.response_key, body)?, &mac),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            self.reset();
            Err(RpcError::WrongHmac)
        }
    }

    /// Forgets the session (after any failed call, as upstream does).
    pub fn reset(&mut self) {
        self.key = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn server_ratchet_and_replay() {
        let mut s = Sessions::default();
        let secret = [7u8; 20];
        s.hello("01", &secret, 8);
        let mac = hmac_sha1(&secret, b"/getDh?cn=01").unwrap();
        let a = s.authenticate("01", b"/getDh?cn=01", &mac).unwrap();
        assert_eq!(a.response_key, sha1(&secret).unwrap());
        assert_eq!(a.protocol, 8);
        assert!(matches!(
            s.authenticate("01", b"/getDh?cn=01", &mac),
            Err(RpcError::WrongHmac)
        ));
        let next = sha1(&a.response_key).unwrap();
        let mac = hmac_sha1(&next, b"/getCa").unwrap();
        assert!(s.authenticate("01", b"/getCa", &mac).is_ok());
        assert!(matches!(
            s.authenticate("10", b"/getCa", &mac),
            Err(RpcError::NoSession)
        ));
    }

    #[test]
    fn foreign_hello_keeps_session() {
        let mut s = Sessions::default();
        s.hello("01", &[1; 20], 8);
        let mac = hmac_sha1(&[1; 20], b"/a").unwrap();
        let a = s.authenticate("01", b"/a", &mac).unwrap();
        let used = sha1(&a.response_key).unwrap();
        s.hello("01", &[2; 20], 8);
        let mac = hmac_sha1(&used, b"/b").unwrap();
        assert!(s.authenticate("01", b"/b", &mac).is_ok());
    }

    #[test]
    fn client_and_server_agree() {
        let pki = re6st_testkit::Pki::new("2001:db8::/32");
        let node = pki.node("1/16", 1);
        let mut server = Sessions::default();
        let secret = [42u8; 20];
        server.hello("0000000000000001", &secret, 10);
        let answer = hello_response(&node.cert, &pki.ca_key, &secret).unwrap();

        let mut client = ClientSession::default();
        assert!(client.needs_hello());
        client.accept_hello(&answer, &pki.ca, &node.key).unwrap();
        for target in ["/getNetworkConfig?cn=0000000000000001", "/getCa", "/x"] {
            let req = client.sign(target).unwrap();
            let mac = decode_header(req.header.as_bytes()).unwrap();
            let auth = server
                .authenticate("0000000000000001", target.as_bytes(), &mac)
                .unwrap();
            let header = response_header(&auth.response_key, b"body").unwrap();
            client
                .verify_response(&req, b"body", Some(header.as_bytes()))
                .unwrap();
        }
        // A tampered answer resets the session.
        let req = client.sign("/y").unwrap();
        assert!(client
            .verify_response(&req, b"body", Some(b"AAAA"))
            .is_err());
        assert!(client.needs_hello());
    }

    #[test]
    fn hello_signed_by_another_ca_is_refused() {
        let pki = re6st_testkit::Pki::new("2001:db8::/32");
        let other = re6st_testkit::Pki::new("2001:db8::/32");
        let node = pki.node("1/16", 1);
        let answer = hello_response(&node.cert, &other.ca_key, &[1; 20]).unwrap();
        let mut client = ClientSession::default();
        assert!(matches!(
            client.accept_hello(&answer, &pki.ca, &node.key),
            Err(RpcError::HelloNotSigned)
        ));
        for bad in [&b""[..], b"abc", &[0u8; 512]] {
            assert!(client.accept_hello(bad, &pki.ca, &node.key).is_err());
        }
        assert!(client.needs_hello());
    }

    proptest! {
        #[test]
        fn header_decoding_never_panics(v in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_header(&v);
        }
    }
}
