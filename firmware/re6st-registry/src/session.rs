//! Registry sessions: `hello` hands a client a secret encrypted to its
//! certificate; each authenticated call carries an HMAC of its request
//! target keyed by the current secret, and both sides then ratchet the key
//! with SHA-1 so that a request cannot be replayed.
//!
//! Two keys are kept per client: the last one really used, and the one of
//! the last `hello`, so that nobody can break an existing session by
//! calling `hello` for someone else's prefix.
//!
//! NOTE: temporary, registry-local; to be replaced by `re6st_proto::rpc`
//! (being written) as soon as it provides the same operations.

use std::collections::HashMap;

use re6st_proto::crypto::{hmac_sha1, mac_eq, sha1, CryptoError};

/// Length of a session secret (upstream's `>QQI` layout).
pub const SECRET_LEN: usize = 20;

/// A new secret: the time in microseconds (so newer sorts after older),
/// then 96 random bits.
pub fn new_secret(now_micros: u64, random: &[u8; 12]) -> [u8; SECRET_LEN] {
    let mut s = [0u8; SECRET_LEN];
    s[..8].copy_from_slice(&now_micros.to_be_bytes());
    s[8..].copy_from_slice(random);
    s
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    secret: Vec<u8>,
    protocol: u32,
}

#[derive(Debug, Default)]
pub struct Sessions {
    by_prefix: HashMap<String, Vec<Key>>,
}

/// The outcome of a successful authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Key of the response HMAC.
    pub response_key: [u8; 20],
    pub protocol: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("no session for this prefix")]
    NoSession,
    #[error("wrong HMAC")]
    WrongHmac,
    #[error("crypto: {0}")]
    Crypto(String),
}

impl From<CryptoError> for SessionError {
    fn from(e: CryptoError) -> Self {
        SessionError::Crypto(e.to_string())
    }
}

impl Sessions {
    /// Records the secret of a new `hello`, keeping the last used key.
    pub fn hello(&mut self, prefix: &str, secret: &[u8], protocol: u32) {
        let keys = self.by_prefix.entry(prefix.to_owned()).or_default();
        keys.truncate(1);
        keys.push(Key {
            secret: secret.to_vec(),
            protocol,
        });
    }

    /// Checks the HMAC of a request target; on success the session moves
    /// on to the next key.
    pub fn authenticate(
        &mut self,
        prefix: &str,
        target: &[u8],
        mac: &[u8],
    ) -> Result<Authenticated, SessionError> {
        let keys = self
            .by_prefix
            .get_mut(prefix)
            .ok_or(SessionError::NoSession)?;
        for k in keys.iter() {
            if mac_eq(&hmac_sha1(&k.secret, target)?, mac) {
                let response_key = sha1(&k.secret)?;
                let next = sha1(&response_key)?;
                let protocol = k.protocol;
                *keys = vec![Key {
                    secret: next.to_vec(),
                    protocol,
                }];
                return Ok(Authenticated {
                    response_key,
                    protocol,
                });
            }
        }
        Err(SessionError::WrongHmac)
    }

    /// The protocol of a client's session.
    pub fn protocol(&self, prefix: &str) -> Option<u32> {
        self.by_prefix
            .get(prefix)
            .and_then(|k| k.first())
            .map(|k| k.protocol)
    }

    pub fn forget(&mut self, prefix: &str) {
        self.by_prefix.remove(prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratchet_and_replay() {
        let mut s = Sessions::default();
        let secret = new_secret(1, &[7; 12]);
        s.hello("01", &secret, 8);
        let mac = hmac_sha1(&secret, b"/getDh?cn=01").unwrap();
        let a = s.authenticate("01", b"/getDh?cn=01", &mac).unwrap();
        assert_eq!(a.response_key, sha1(&secret).unwrap());
        assert_eq!(a.protocol, 8);
        // Replaying the same MAC fails: the key moved on.
        assert_eq!(
            s.authenticate("01", b"/getDh?cn=01", &mac),
            Err(SessionError::WrongHmac)
        );
        let next = sha1(&a.response_key).unwrap();
        let mac = hmac_sha1(&next, b"/getCa").unwrap();
        assert!(s.authenticate("01", b"/getCa", &mac).is_ok());
        assert_eq!(
            s.authenticate("10", b"/getCa", &mac),
            Err(SessionError::NoSession)
        );
    }

    #[test]
    fn hello_by_someone_else_keeps_session() {
        let mut s = Sessions::default();
        let first = new_secret(1, &[1; 12]);
        s.hello("01", &first, 8);
        let mac = hmac_sha1(&first, b"/a").unwrap();
        let a = s.authenticate("01", b"/a", &mac).unwrap();
        let used = sha1(&a.response_key).unwrap();
        // An attacker's hello adds a key but the used one still works.
        s.hello("01", &new_secret(2, &[2; 12]), 8);
        let mac = hmac_sha1(&used, b"/b").unwrap();
        assert!(s.authenticate("01", b"/b", &mac).is_ok());
    }
}
