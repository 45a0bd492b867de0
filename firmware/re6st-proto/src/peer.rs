//! The node-to-node protocol on UDP port 326 (upstream `x509.Peer` and
//! `BaseTunnelManager.handlePeerEvent`).
//!
//! ```text
//! A -> B  hello0:  seqno 0 | A's cert (DER)                      (A doesn't know B)
//!                  seqno 1 | protocol | sha1(B's cert) | A's cert (A knows B's cert)
//! B -> A  hello:   seqno 2 | protocol | X = encrypt(A, secret) | sign(B, X)
//! then    message: seqno (> 2, increasing) | payload | HMAC-SHA1(secret, seqno | payload)
//! ```
//!
//! A new secret is accepted only if it is greater than the current one
//! (secrets start with a microsecond timestamp), and a message only if its
//! sequence number is greater than the last one accepted: replays and
//! reordered datagrams are dropped.
//!
//! [`Peer`] is one remote node's session; [`Identity`] and
//! [`handle_handshake`] decide what to answer to handshake datagrams.
//! Time, randomness and the CRL are inputs.

use std::collections::BTreeSet;

use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509StoreContext, X509};
use thiserror::Error;

use crate::cert;
use crate::crypto::{self, hmac_sha1, mac_eq, CryptoError};
use crate::packint;
use crate::prefix::Prefix;

/// Length of the MAC ending every authenticated message.
pub const HMAC_LEN: usize = 20;
/// Length of a session secret.
pub const SECRET_LEN: usize = 20;
/// A peer that stopped answering for this long is no longer connected,
/// and an unanswered hello0 is re-sent at most this often.
pub const PEER_TIMEOUT: i64 = 60;
/// The first re-send of an unanswered hello0 comes this soon, the next
/// ones twice as late each time, up to [`PEER_TIMEOUT`]: a hello0 lost
/// while routes were still settling costs seconds, not a minute.
pub const HELLO0_FIRST_RETRY: i64 = 1;

#[derive(Debug, Error)]
pub enum PeerError {
    #[error("datagram too short")]
    Short,
    #[error("we don't know this peer's certificate")]
    NoCert,
    #[error("session secret is not newer than the current one")]
    OldSecret,
    #[error("session secret has the wrong length")]
    BadSecret,
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("OpenSSL: {0}")]
    Ssl(#[from] openssl::error::ErrorStack),
}

/// A new session secret: microseconds since the epoch (big-endian), then
/// 12 random bytes, so that a newer secret compares greater.
pub fn new_secret(micros: u64, random: [u8; 12]) -> [u8; SECRET_LEN] {
    let mut s = [0u8; SECRET_LEN];
    s[..8].copy_from_slice(&micros.to_be_bytes());
    s[8..].copy_from_slice(&random);
    s
}

/// A datagram as the receiving session sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// Handshake (seqno 0, 1 or 2). `protocol` is what a packed integer at
    /// the start of seqno 1/2 bodies says (`None` for seqno 0).
    Handshake {
        seqno: u32,
        protocol: Option<u32>,
        body: &'a [u8],
    },
    /// An authenticated, fresh message (may be empty: a keep-alive).
    Message(&'a [u8]),
    /// Bad MAC, replay or too short: to be ignored.
    Rejected,
}

/// Our session with one remote node.
#[derive(Debug)]
pub struct Peer {
    pub prefix: Prefix,
    cert: Option<X509>,
    /// Serial of the peer's certificate, for the CRL.
    pub serial: Option<u128>,
    /// When the peer's certificate expires (Unix time).
    pub stop_date: Option<i64>,
    key: [u8; SECRET_LEN],
    recv_seqno: u32,
    send_seqno: u32,
    /// `None`: heard from since our last send; `Some(0)`: never connected;
    /// `Some(t)`: first unanswered send at `t`.
    last: Option<i64>,
    hello0_quiet_until: i64,
    /// Wait before re-sending an unanswered hello0; 0 once answered.
    hello0_backoff: i64,
    /// Protocol of the peer, as negotiated.
    pub protocol: u32,
    /// Last network version we know the peer has.
    pub version: Vec<u8>,
    /// When a datagram last went to or came from the peer (the session's
    /// user keeps it: this type is not told the time of every datagram),
    /// so that idle sessions can be dropped.
    pub last_active: i64,
}

impl Peer {
    /// A peer we have no session with; `initial_key` should be random (it
    /// is what a forged hello must beat).
    pub fn new(prefix: Prefix, initial_key: [u8; SECRET_LEN]) -> Peer {
        Peer {
            prefix,
            cert: None,
            serial: None,
            stop_date: None,
            key: initial_key,
            recv_seqno: 0,
            send_seqno: 0,
            last: Some(0),
            hello0_quiet_until: 0,
            hello0_backoff: 0,
            protocol: 0,
            version: Vec::new(),
            last_active: 0,
        }
    }

    pub fn cert(&self) -> Option<&X509> {
        self.cert.as_ref()
    }

    /// Records the peer's verified certificate.
    pub fn set_cert(&mut self, cert: X509) -> Result<(), PeerError> {
        self.serial = Some(cert::serial(&cert).map_err(|_| PeerError::NoCert)?);
        self.stop_date = cert::not_after(&cert).ok();
        self.cert = Some(cert);
        Ok(())
    }

    /// Whether the peer answered recently.
    pub fn connected(&self, now: i64) -> bool {
        match self.last {
            None => true,
            Some(t) => now < t + PEER_TIMEOUT,
        }
    }

    /// The hello0 to send, unless one is still waiting for its answer.
    pub fn hello0(&self, our_cert_der: &[u8], now: i64) -> Result<Option<Vec<u8>>, PeerError> {
        if now < self.hello0_quiet_until {
            return Ok(None);
        }
        self.hello0_now(our_cert_der).map(Some)
    }

    /// The hello0, whenever the last one went.
    fn hello0_now(&self, our_cert_der: &[u8]) -> Result<Vec<u8>, PeerError> {
        let mut msg = Vec::with_capacity(64 + our_cert_der.len());
        match &self.cert {
            Some(c) => {
                // Always announce our protocol: the peer may just have upgraded.
                msg.extend_from_slice(&1u32.to_be_bytes());
                msg.extend_from_slice(
                    &packint::pack(crate::PROTOCOL.into()).map_err(CryptoError::from)?,
                );
                msg.extend_from_slice(&crypto::fingerprint(c)?);
            }
            None => msg.extend_from_slice(&0u32.to_be_bytes()),
        }
        msg.extend_from_slice(our_cert_der);
        Ok(msg)
    }

    /// To call once a hello0 was really sent.
    pub fn hello0_sent(&mut self, now: i64) {
        self.hello0_backoff = match self.hello0_backoff {
            0 => HELLO0_FIRST_RETRY,
            b => (2 * b).min(PEER_TIMEOUT),
        };
        self.hello0_quiet_until = now + self.hello0_backoff;
    }

    /// The peer answered: the next hello0 (if the session ever ends) may
    /// go at once, and its re-sends start soon again.
    fn answered(&mut self) {
        self.last = None;
        self.hello0_backoff = 0;
        self.hello0_quiet_until = 0;
    }

    /// Starts a session with a fresh `secret`: the hello datagram (seqno 2)
    /// to send. `protocol` is the peer's; 0 means it predates protocol
    /// negotiation, and then none is announced.
    pub fn hello(
        &mut self,
        our_key: &PKey<Private>,
        secret: [u8; SECRET_LEN],
        protocol: u32,
    ) -> Result<Vec<u8>, PeerError> {
        let cert = self.cert.as_ref().ok_or(PeerError::NoCert)?;
        let encrypted = crypto::encrypt_for(cert, &secret)?;
        let signature = crypto::sign(our_key, &encrypted)?;
        self.key = secret;
        self.recv_seqno = 2;
        self.send_seqno = 2;
        self.last = Some(0);
        self.protocol = protocol;
        let mut msg = 2u32.to_be_bytes().to_vec();
        if protocol != 0 {
            msg.extend_from_slice(
                &packint::pack(crate::PROTOCOL.into()).map_err(CryptoError::from)?,
            );
        }
        msg.extend_from_slice(&encrypted);
        msg.extend_from_slice(&signature);
        Ok(msg)
    }

    /// Accepts the secret of a hello we received.
    pub fn new_session(&mut self, secret: &[u8], protocol: u32) -> Result<(), PeerError> {
        let secret: [u8; SECRET_LEN] = secret.try_into().map_err(|_| PeerError::BadSecret)?;
        if secret <= self.key {
            return Err(PeerError::OldSecret);
        }
        self.key = secret;
        self.recv_seqno = 2;
        self.send_seqno = 2;
        self.answered();
        self.protocol = protocol;
        Ok(())
    }

    /// Classifies and authenticates a datagram from this peer.
    pub fn decode<'a>(&mut self, datagram: &'a [u8]) -> Received<'a> {
        let Some((seq, rest)) = datagram.split_first_chunk::<4>() else {
            return Received::Rejected;
        };
        let seqno = u32::from_be_bytes(*seq);
        if seqno <= 2 {
            let (protocol, body) = if seqno == 0 {
                (None, rest)
            } else {
                match packint::unpack(rest) {
                    Ok((p, n)) => (Some(u32::try_from(p).unwrap_or(u32::MAX)), &rest[n..]),
                    Err(_) => (Some(0), rest),
                }
            };
            return Received::Handshake {
                seqno,
                protocol,
                body,
            };
        }
        if datagram.len() < 4 + HMAC_LEN {
            return Received::Rejected;
        }
        let (signed, mac) = datagram.split_at(datagram.len() - HMAC_LEN);
        let authentic = hmac_sha1(&self.key, signed).is_ok_and(|m| mac_eq(&m, mac));
        if !authentic || seqno <= self.recv_seqno {
            return Received::Rejected;
        }
        self.recv_seqno = seqno;
        self.answered();
        Received::Message(&signed[4..])
    }

    /// Frames an authenticated message (`payload` may be empty).
    pub fn encode(&mut self, payload: &[u8]) -> Result<Vec<u8>, PeerError> {
        self.send_seqno = self.send_seqno.wrapping_add(1);
        let mut msg = Vec::with_capacity(4 + payload.len() + HMAC_LEN);
        msg.extend_from_slice(&self.send_seqno.to_be_bytes());
        msg.extend_from_slice(payload);
        let mac = hmac_sha1(&self.key, &msg)?;
        msg.extend_from_slice(&mac);
        Ok(msg)
    }

    /// To call when an authenticated message was sent: starts the clock
    /// that declares the peer gone if it does not answer.
    pub fn sent(&mut self, now: i64) {
        if matches!(self.last, None | Some(0)) {
            self.last = Some(now);
        }
    }
}

/// Our sessions, by peer prefix.
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: std::collections::BTreeMap<Prefix, Peer>,
}

impl PeerTable {
    /// The peer whose prefix the address bits `sender` (after the network
    /// prefix) start with.
    pub fn lookup(&mut self, sender: &Prefix) -> Option<&mut Peer> {
        self.peers
            .range_mut(..=*sender)
            .next_back()
            .map(|(_, p)| p)
            .filter(|p| sender.starts_with(&p.prefix))
    }

    pub fn get(&self, prefix: &Prefix) -> Option<&Peer> {
        self.peers.get(prefix)
    }

    pub fn get_mut(&mut self, prefix: &Prefix) -> Option<&mut Peer> {
        self.peers.get_mut(prefix)
    }

    /// The session with `prefix`, created with `initial_key` if new.
    pub fn entry(&mut self, prefix: Prefix, initial_key: [u8; SECRET_LEN]) -> &mut Peer {
        self.peers
            .entry(prefix)
            .or_insert_with(|| Peer::new(prefix, initial_key))
    }

    /// Drops the sessions of revoked or expired peers.
    pub fn retain(&mut self, mut keep: impl FnMut(&Peer) -> bool) {
        self.peers.retain(|_, p| keep(p));
    }

    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn contains(&self, prefix: &Prefix) -> bool {
        self.peers.contains_key(prefix)
    }
}

/// What we need to know about ourselves to answer handshakes.
pub struct Identity {
    pub ca: X509,
    pub cert: X509,
    pub cert_der: Vec<u8>,
    pub fingerprint: [u8; 20],
    pub key: PKey<Private>,
    pub network: Prefix,
    pub prefix: Prefix,
}

impl Identity {
    pub fn new(ca: X509, cert: X509, key: PKey<Private>) -> Result<Identity, PeerError> {
        let network = cert::network_from_ca(&ca).map_err(|_| PeerError::NoCert)?;
        let prefix = cert::node_prefix(&cert).map_err(|_| PeerError::NoCert)?;
        Ok(Identity {
            cert_der: cert.to_der()?,
            fingerprint: crypto::fingerprint(&cert)?,
            ca,
            cert,
            key,
            network,
            prefix,
        })
    }

    /// Verifies a peer certificate (DER) against our CA at time `now`.
    pub fn verify_peer_cert(&self, der: &[u8], now: i64) -> Result<X509, String> {
        let cert = X509::from_der(der).map_err(|_| "unable to load certificate".to_owned())?;
        let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
        store.add_cert(self.ca.clone()).map_err(|e| e.to_string())?;
        let mut params =
            openssl::x509::verify::X509VerifyParam::new().map_err(|e| e.to_string())?;
        // time_t is 32 bits on armv7 and mipsel: a time it cannot hold is
        // refused rather than wrapped.
        let t = libc::time_t::try_from(now).map_err(|_| format!("time {now} out of range"))?;
        params.set_time(t);
        store.set_param(&params).map_err(|e| e.to_string())?;
        let store = store.build();
        let chain = Stack::new().map_err(|e| e.to_string())?;
        let mut ctx = X509StoreContext::new().map_err(|e| e.to_string())?;
        let ok = ctx
            .init(&store, &cert, &chain, |c| {
                let ok = c.verify_cert()?;
                Ok(if ok {
                    Ok(())
                } else {
                    Err(c.error().error_string().to_owned())
                })
            })
            .map_err(|e| e.to_string())?;
        ok.map(|()| cert)
    }
}

/// What to do after a handshake datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeAction {
    /// Send this hello0 (then call [`Peer::hello0_sent`]).
    SendHello0(Vec<u8>),
    /// Send this hello (a new session was started by us).
    SendHello(Vec<u8>),
    /// The peer started a session with us: tell it our network version.
    SessionAccepted,
    /// The datagram was not acceptable (reason for the logs).
    Ignored(String),
}

/// Answers a handshake datagram from the node at address bits `sender`
/// (after the network prefix): seqno 0/1 carry the peer's certificate
/// (verified against the CA at `now`, refused if its serial is in `crl` or
/// its CN is not a prefix of `sender`); seqno 2 carries a new secret.
/// `secret` is used if we start a session; `initial_key` for a new peer.
#[allow(clippy::too_many_arguments)]
pub fn handle_handshake(
    me: &Identity,
    peers: &mut PeerTable,
    sender: &Prefix,
    seqno: u32,
    protocol: Option<u32>,
    body: &[u8],
    crl: &BTreeSet<u64>,
    now: i64,
    secret: [u8; SECRET_LEN],
    initial_key: [u8; SECRET_LEN],
) -> HandshakeAction {
    let first = handshake_once(
        me,
        peers,
        sender,
        seqno,
        protocol.unwrap_or(0),
        body,
        crl,
        now,
        (secret, initial_key),
        true,
    );
    match (first, protocol) {
        // A peer too old to announce its protocol: what we took for the
        // protocol was the start of the body. The packed encoding is
        // unique, so the original body can be rebuilt.
        (Retry, Some(p)) => {
            let mut original = packint::pack(p.into()).unwrap_or_default();
            original.extend_from_slice(body);
            match handshake_once(
                me,
                peers,
                sender,
                seqno,
                0,
                &original,
                crl,
                now,
                (secret, initial_key),
                false,
            ) {
                Done(a) => a,
                Retry => HandshakeAction::Ignored("invalid certificate".into()),
            }
        }
        (Retry, None) => HandshakeAction::Ignored("invalid certificate".into()),
        (Done(a), _) => a,
    }
}

enum Attempt {
    Done(HandshakeAction),
    Retry,
}
use Attempt::{Done, Retry};

#[allow(clippy::too_many_arguments)]
fn handshake_once(
    me: &Identity,
    peers: &mut PeerTable,
    sender: &Prefix,
    seqno: u32,
    protocol: u32,
    body: &[u8],
    crl: &BTreeSet<u64>,
    now: i64,
    (secret, initial_key): ([u8; SECRET_LEN], [u8; SECRET_LEN]),
    may_retry: bool,
) -> Attempt {
    let ignored = |why: &str| Done(HandshakeAction::Ignored(why.to_owned()));
    if seqno == 2 {
        let Some(peer) = peers.lookup(sender) else {
            return ignored("hello from an unknown peer");
        };
        let half = body.len() / 2;
        let (encrypted, signature) = body.split_at(half);
        let Some(cert) = peer.cert() else {
            return ignored("hello from a peer whose certificate we don't know");
        };
        if crypto::verify(cert, signature, encrypted).is_err() {
            return ignored("hello not signed by the peer");
        }
        return match crypto::decrypt(&me.key, encrypted)
            .map_err(PeerError::from)
            .and_then(|s| peer.new_session(&s, protocol))
        {
            Ok(()) => Done(HandshakeAction::SessionAccepted),
            Err(e) => ignored(&format!("new session key refused: {e}")),
        };
    }
    // seqno 1: the peer knows a certificate of ours; is it the current one?
    let (knows_us, der) = if seqno == 1 {
        match body.strip_prefix(&me.fingerprint[..]) {
            Some(rest) => (true, rest),
            None => (false, body.get(me.fingerprint.len()..).unwrap_or_default()),
        }
    } else {
        (false, body)
    };
    let cert = match me.verify_peer_cert(der, now) {
        Ok(c) => c,
        Err(_) if may_retry && seqno != 0 => return Retry,
        Err(e) => return ignored(&format!("invalid certificate: {e}")),
    };
    let serial = cert::serial(&cert).ok();
    if serial.is_some_and(|s| u64::try_from(s).is_ok_and(|s| crl.contains(&s))) {
        return ignored("revoked certificate");
    }
    let peer = match cert::node_prefix(&cert) {
        Ok(p) if sender.starts_with(&p) => peers.entry(p, initial_key),
        Ok(_) => return ignored("certificate of another node than the sender"),
        Err(_) => return ignored("certificate without a node prefix"),
    };
    // Their first hello0 to us, while we had not their certificate: if we
    // sent one too (both ends started at once, e.g. on a new tunnel), each
    // end would ignore the other's as "sent recently" until its re-send
    // (4 s, then longer). Answered at once instead, once per certificate
    // learnt: the answer is a seqno 1 hello0, which the other end answers
    // with a hello; the two hellos that then cross are settled by their
    // secrets (the newer wins, see `new_session`).
    let first_contact = peer.cert().is_none();
    if peer.set_cert(cert).is_err() {
        return ignored("unusable certificate");
    }
    if knows_us {
        match peer.hello(&me.key, secret, protocol) {
            Ok(h) => Done(HandshakeAction::SendHello(h)),
            Err(e) => ignored(&e.to_string()),
        }
    } else if first_contact {
        match peer.hello0_now(&me.cert_der) {
            Ok(h) => Done(HandshakeAction::SendHello0(h)),
            Err(e) => ignored(&e.to_string()),
        }
    } else {
        match peer.hello0(&me.cert_der, now) {
            Ok(Some(h)) => Done(HandshakeAction::SendHello0(h)),
            Ok(None) => ignored("hello0 sent recently"),
            Err(e) => ignored(&e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use re6st_testkit::Pki;

    const NOW: i64 = 2_000_000_000;

    fn pair() -> (Pki, Identity, Identity) {
        let pki = Pki::new("2001:db8::/32");
        let a = pki.node("1/16", 1);
        let b = pki.node("2/16", 2);
        let ia = Identity::new(pki.ca.clone(), a.cert, a.key).unwrap();
        let ib = Identity::new(pki.ca.clone(), b.cert, b.key).unwrap();
        (pki, ia, ib)
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn recv(
        me: &Identity,
        t: &mut PeerTable,
        from: &Prefix,
        d: &[u8],
        secret: u64,
        crl: &BTreeSet<u64>,
    ) -> HandshakeAction {
        let peer = t.entry(*from, [0; 20]);
        let Received::Handshake {
            seqno,
            protocol,
            body,
        } = peer.decode(d)
        else {
            panic!("not a handshake");
        };
        let body = body.to_vec();
        handle_handshake(
            me,
            t,
            from,
            seqno,
            protocol,
            &body,
            crl,
            now(),
            new_secret(secret, [1; 12]),
            [0; 20],
        )
    }

    /// A and B, both ours, establish a session; returns their tables.
    fn session(a: &Identity, b: &Identity) -> (PeerTable, PeerTable) {
        let (mut ta, mut tb) = (PeerTable::default(), PeerTable::default());
        let crl = BTreeSet::new();
        let h0 = ta
            .entry(b.prefix, [0; 20])
            .hello0(&a.cert_der, now())
            .unwrap()
            .unwrap();
        let HandshakeAction::SendHello0(h1) = recv(b, &mut tb, &a.prefix, &h0, 5, &crl) else {
            panic!()
        };
        let HandshakeAction::SendHello(h2) = recv(a, &mut ta, &b.prefix, &h1, 6, &crl) else {
            panic!()
        };
        assert_eq!(
            recv(b, &mut tb, &a.prefix, &h2, 7, &crl),
            HandshakeAction::SessionAccepted
        );
        (ta, tb)
    }

    #[test]
    fn messages_replays_and_tampering() {
        let (_pki, a, b) = pair();
        let (mut ta, mut tb) = session(&a, &b);
        let pa = ta.get_mut(&b.prefix).unwrap();
        let pb = tb.get_mut(&a.prefix).unwrap();
        let m1 = pa.encode(b"\x01").unwrap();
        let m2 = pa.encode(b"\x04").unwrap();
        assert_eq!(pb.decode(&m2), Received::Message(b"\x04"));
        assert_eq!(pb.decode(&m1), Received::Rejected, "reordered");
        assert_eq!(pb.decode(&m2), Received::Rejected, "replayed");
        let mut bad = pa.encode(b"\x05").unwrap();
        bad[5] ^= 0x40;
        assert_eq!(pb.decode(&bad), Received::Rejected, "tampered");
        for n in 0..24 {
            let m = pa.encode(b"x").unwrap();
            assert!(matches!(
                pb.decode(&m[..n.min(m.len())]),
                Received::Rejected | Received::Handshake { .. }
            ));
        }
        assert!(pb.connected(NOW.min(now())));
        pb.sent(1000);
        assert!(!pb.connected(1000 + PEER_TIMEOUT));
    }

    #[test]
    fn unanswered_hello0_is_resent_sooner_then_later() {
        let cert = b"der";
        let mut p = Peer::new(Prefix::EMPTY, new_secret(10, [0; 12]));
        let mut t = 1000;
        let mut gaps = Vec::new();
        let mut last_sent = t;
        while gaps.len() < 6 {
            if p.hello0(cert, t).unwrap().is_some() {
                if t != 1000 {
                    gaps.push(t - last_sent);
                }
                last_sent = t;
                p.hello0_sent(t);
            }
            t += 1;
        }
        assert_eq!(gaps, vec![1, 2, 4, 8, 16, 32]);
        // Answered: a later hello0 goes at once, and retries soon again.
        p.new_session(&new_secret(11, [0; 12]), 10).unwrap();
        assert!(p.hello0(cert, t).unwrap().is_some());
        p.hello0_sent(t);
        assert!(p.hello0(cert, t).unwrap().is_none());
        assert!(p.hello0(cert, t + 1).unwrap().is_some());
    }

    #[test]
    fn older_secret_is_refused() {
        let mut p = Peer::new(Prefix::EMPTY, new_secret(10, [0; 12]));
        assert!(matches!(
            p.new_session(&new_secret(9, [9; 12]), 10),
            Err(PeerError::OldSecret)
        ));
        assert!(matches!(
            p.new_session(&[1; 19], 10),
            Err(PeerError::BadSecret)
        ));
        p.new_session(&new_secret(11, [0; 12]), 10).unwrap();
        assert!(matches!(
            p.new_session(&new_secret(11, [0; 12]), 10),
            Err(PeerError::OldSecret)
        ));
    }

    #[test]
    fn bad_certificates_are_ignored() {
        let (_pki, a, b) = pair();
        let other = Pki::new("2001:db8::/32").node("2/16", 2);
        let mut tb = PeerTable::default();
        let crl = BTreeSet::new();
        let h0 = |der: &[u8]| [&0u32.to_be_bytes()[..], der].concat();
        // Signed by another CA.
        let d = h0(&other.cert.to_der().unwrap());
        assert!(matches!(
            recv(&a, &mut tb, &b.prefix, &d, 1, &crl),
            HandshakeAction::Ignored(_)
        ));
        // Revoked.
        let revoked: BTreeSet<u64> = [2].into();
        assert!(matches!(
            recv(&a, &mut tb, &b.prefix, &h0(&b.cert_der), 1, &revoked),
            HandshakeAction::Ignored(_)
        ));
        // Sent from another node's address.
        let c_prefix = Prefix::from_subnet("3/16").unwrap();
        assert!(matches!(
            recv(&a, &mut tb, &c_prefix, &h0(&b.cert_der), 1, &crl),
            HandshakeAction::Ignored(_)
        ));
        // Garbage.
        assert!(matches!(
            recv(&a, &mut tb, &b.prefix, &h0(b"junk"), 1, &crl),
            HandshakeAction::Ignored(_)
        ));
        // A hello (seqno 2) from a peer we have no certificate for.
        let mut hello = 2u32.to_be_bytes().to_vec();
        hello.extend_from_slice(&[0; 512]);
        assert!(matches!(
            recv(&a, &mut tb, &b.prefix, &hello, 1, &crl),
            HandshakeAction::Ignored(_)
        ));
        // The genuine one is accepted.
        assert!(matches!(
            recv(&a, &mut tb, &b.prefix, &h0(&b.cert_der), 1, &crl),
            HandshakeAction::SendHello0(_)
        ));
    }

    #[test]
    fn table_lookup_by_address_bits() {
        let mut t = PeerTable::default();
        let p: Prefix = "0000000000000010".parse().unwrap();
        t.entry(p, [0; 20]);
        let addr_bits = p
            .concat(&"0000000000000000000001".parse().unwrap())
            .unwrap();
        assert_eq!(t.lookup(&addr_bits).unwrap().prefix, p);
        assert!(t.lookup(&"0000000000000011".parse().unwrap()).is_none());
    }

    proptest! {
        #[test]
        fn decode_never_panics(d in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut p = Peer::new(Prefix::EMPTY, [0; 20]);
            let _ = p.decode(&d);
        }
    }
}
