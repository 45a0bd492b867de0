//! Registry side of the session: the `hello` answer and the per-client keys.

use std::collections::HashMap;

use openssl::pkey::{PKeyRef, Private};
use openssl::x509::X509Ref;

use super::{decode_header, response_header, RpcError, SessionKey};
use crate::crypto::{self, hmac_sha1, mac_eq, sha1};

/// The answer to `hello`: `secret` encrypted for the client's certificate,
/// followed by the CA's signature of that ciphertext. Both halves are as
/// long as the RSA modulus when the client and CA keys have the same size,
/// which is how the client splits them (upstream asserts it; so do we).
pub fn hello_response(
    client_cert: &X509Ref,
    ca_key: &PKeyRef<Private>,
    secret: &SessionKey,
) -> Result<Vec<u8>, RpcError> {
    let mut answer = crypto::encrypt_for(client_cert, secret)?;
    let signature = crypto::sign(ca_key, &answer)?;
    if signature.len() != answer.len() {
        return Err(RpcError::KeySizeMismatch {
            client: answer.len(),
            ca: signature.len(),
        });
    }
    answer.extend_from_slice(&signature);
    Ok(answer)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    secret: SessionKey,
    /// Protocol the client announced in the `hello` this key comes from.
    protocol: u32,
}

/// Upstream's two-entry key list of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientKeys {
    /// The key of the session in use: the last one really used, or the
    /// first `hello` of a client that had no session.
    current: Key,
    /// The key of the latest `hello` since `current` was last used.
    latest_hello: Option<Key>,
}

/// A request that passed authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Key of the answer's HMAC.
    pub response_key: SessionKey,
    /// Protocol the client announced in its `hello`.
    pub protocol: u32,
}

impl Authenticated {
    /// The `Re6stHMAC` header of the answer `body` (empty for 204).
    pub fn response_header(&self, body: &[u8]) -> Result<String, RpcError> {
        response_header(&self.response_key, body)
    }
}

/// The sessions of every client, by client prefix (bit string, the `cn`
/// and `client_prefix` arguments).
///
/// A `hello` never breaks a session in use: it adds a second key, and
/// whichever key the client then uses becomes the only one.
#[derive(Debug, Default)]
pub struct Sessions {
    by_client: HashMap<String, ClientKeys>,
}

impl Sessions {
    /// Records the secret sent in answer to a `hello` from `client`.
    pub fn hello(&mut self, client: &str, secret: &SessionKey, protocol: u32) {
        let key = Key {
            secret: *secret,
            protocol,
        };
        match self.by_client.get_mut(client) {
            Some(keys) => keys.latest_hello = Some(key),
            None => {
                self.by_client.insert(
                    client.to_owned(),
                    ClientKeys {
                        current: key,
                        latest_hello: None,
                    },
                );
            }
        }
    }

    /// Answers a `hello`: builds the answer for `client_cert` with the
    /// caller's fresh random `secret` (20 bytes), then records the secret.
    pub fn answer_hello(
        &mut self,
        client: &str,
        protocol: u32,
        client_cert: &X509Ref,
        ca_key: &PKeyRef<Private>,
        secret: &SessionKey,
    ) -> Result<Vec<u8>, RpcError> {
        let answer = hello_response(client_cert, ca_key, secret)?;
        self.hello(client, secret, protocol);
        Ok(answer)
    }

    /// Checks the HMAC of a request target (the `/method?query` the server
    /// received). On success the key that matched is ratcheted: the answer
    /// is signed with `sha1(key)` and the only key left is
    /// `sha1(sha1(key))`, so the same request cannot be replayed.
    pub fn authenticate(
        &mut self,
        client: &str,
        target: &[u8],
        mac: &[u8],
    ) -> Result<Authenticated, RpcError> {
        let keys = self.by_client.get_mut(client).ok_or(RpcError::NoSession)?;
        let candidates = std::iter::once(&keys.current).chain(keys.latest_hello.as_ref());
        let mut matched = None;
        for key in candidates {
            if mac_eq(&hmac_sha1(&key.secret, target)?, mac) {
                matched = Some(key.clone());
                break;
            }
        }
        let key = matched.ok_or(RpcError::WrongHmac)?;
        let response_key = sha1(&key.secret)?;
        *keys = ClientKeys {
            current: Key {
                secret: sha1(&response_key)?,
                protocol: key.protocol,
            },
            latest_hello: None,
        };
        Ok(Authenticated {
            response_key,
            protocol: key.protocol,
        })
    }

    /// [`Sessions::authenticate`] with the raw `Re6stHMAC` header value.
    pub fn authenticate_header(
        &mut self,
        client: &str,
        target: &[u8],
        header: Option<&[u8]>,
    ) -> Result<Authenticated, RpcError> {
        let mac = decode_header(header.ok_or(RpcError::BadHeader)?)?;
        self.authenticate(client, target, &mac)
    }

    /// Protocol of a client's session in use.
    pub fn protocol(&self, client: &str) -> Option<u32> {
        self.by_client.get(client).map(|k| k.current.protocol)
    }

    /// Drops a client's session (e.g. when its certificate is revoked).
    pub fn forget(&mut self, client: &str) {
        self.by_client.remove(client);
    }

    /// Number of clients with a session.
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(key: &[u8], target: &[u8]) -> [u8; 20] {
        hmac_sha1(key, target).unwrap()
    }

    #[test]
    fn ratchet_and_replay() {
        let mut s = Sessions::default();
        let secret = [7u8; 20];
        s.hello("01", &secret, 8);
        let m = mac(&secret, b"/getDh?cn=01");
        let a = s.authenticate("01", b"/getDh?cn=01", &m).unwrap();
        assert_eq!(a.response_key, sha1(&secret).unwrap());
        assert_eq!(a.protocol, 8);
        assert_eq!(s.protocol("01"), Some(8));
        // Replaying the same request fails: its key is gone.
        assert!(matches!(
            s.authenticate("01", b"/getDh?cn=01", &m),
            Err(RpcError::WrongHmac)
        ));
        let next = sha1(&a.response_key).unwrap();
        assert!(s
            .authenticate("01", b"/getCa", &mac(&next, b"/getCa"))
            .is_ok());
        // The HMAC covers the target: another one does not pass.
        let next = sha1(&sha1(&next).unwrap()).unwrap();
        assert!(s
            .authenticate("01", b"/getCa?x", &mac(&next, b"/getCa"))
            .is_err());
        assert!(matches!(
            s.authenticate("10", b"/getCa", &mac(&next, b"/getCa")),
            Err(RpcError::NoSession)
        ));
    }

    #[test]
    fn foreign_hello_keeps_session_in_use() {
        let mut s = Sessions::default();
        s.hello("01", &[1; 20], 8);
        let a = s.authenticate("01", b"/a", &mac(&[1; 20], b"/a")).unwrap();
        let in_use = sha1(&a.response_key).unwrap();
        s.hello("01", &[2; 20], 10);
        s.hello("01", &[3; 20], 10);
        // The older of two hellos is replaced; the key in use still works.
        assert!(s.authenticate("01", b"/b", &mac(&[2; 20], b"/b")).is_err());
        let a = s.authenticate("01", b"/b", &mac(&in_use, b"/b")).unwrap();
        assert_eq!(a.protocol, 8);
        // ... and once it is used, the pending hello is dropped.
        assert!(s.authenticate("01", b"/c", &mac(&[3; 20], b"/c")).is_err());
    }

    #[test]
    fn hello_key_works_when_it_is_the_newest() {
        let mut s = Sessions::default();
        s.hello("01", &[1; 20], 8);
        s.hello("01", &[2; 20], 10);
        // A fresh client keeps its first hello too (upstream's list).
        let a = s.authenticate("01", b"/a", &mac(&[2; 20], b"/a")).unwrap();
        assert_eq!(a.protocol, 10);
        assert_eq!(s.protocol("01"), Some(10));
        assert!(s.authenticate("01", b"/b", &mac(&[1; 20], b"/b")).is_err());
    }

    #[test]
    fn header_forms() {
        let mut s = Sessions::default();
        s.hello("01", &[1; 20], 8);
        assert!(matches!(
            s.authenticate_header("01", b"/a", None),
            Err(RpcError::BadHeader)
        ));
        assert!(matches!(
            s.authenticate_header("01", b"/a", Some(b"%%%")),
            Err(RpcError::BadHeader)
        ));
        let h = response_header(&[1; 20], b"/a").unwrap();
        let a = s
            .authenticate_header("01", b"/a", Some(h.as_bytes()))
            .unwrap();
        assert_eq!(
            a.response_header(b"").unwrap(),
            response_header(&a.response_key, b"").unwrap()
        );
        s.forget("01");
        assert!(s.is_empty());
    }
}
