//! The node's side of the UDP peer protocol: sessions with every peer,
//! turning datagrams into replies and events for the tunnel manager.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use re6st_proto::message::{Code, Message};
use re6st_proto::peer::{
    handle_handshake, new_secret, HandshakeAction, Identity, Peer, PeerTable, Received,
};
use re6st_proto::prefix::Prefix;
use re6st_proto::PEER_PORT;

/// What a datagram means for the rest of the daemon.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerEvent {
    Address(Prefix, String),
    Kill(Prefix, u8),
    Version(Prefix, Vec<u8>),
    /// An answer to a request the registry relayed through us.
    Forward(Prefix, u8, Vec<u8>),
    /// A request for our tunnels (the registry's `topology`, relayed by
    /// its node), with the request's first byte for the answer.
    Topology(Prefix, u8),
}

pub struct PeerLink {
    pub me: Identity,
    pub peers: PeerTable,
    pub crl: BTreeSet<u64>,
    /// Our address list (answer to code 1).
    pub my_address: String,
    pub version: Vec<u8>,
    pub info: String,
    /// Messages waiting for a session with their peer (a few per peer:
    /// a fixed-capacity queue, extra messages are dropped).
    pub pending: std::collections::BTreeMap<Prefix, Pending>,
    /// Fills a buffer with random bytes (for session secrets): the shell's
    /// cryptographic generator; tests and fuzzing pass a fixed one.
    pub random: fn(&mut [u8]),
}

/// The messages waiting for one peer's session, and since when.
#[derive(Debug, Default)]
pub struct Pending {
    /// When the first of them was queued (seconds).
    pub since: i64,
    pub messages: heapless::Vec<Vec<u8>, MAX_PENDING>,
}

/// How long messages wait for their peer's session: then they are
/// dropped, and the hello0s that [`PeerLink::retry_pending`] re-sends for
/// them stop (whoever sent them asks again if it still cares).
pub const PENDING_FOR: i64 = re6st_proto::peer::PEER_TIMEOUT;

/// Messages kept per peer while its session is being set up.
const MAX_PENDING: usize = 4;
/// Peers with messages waiting for their session, at most: beyond, a
/// message to another such peer is dropped (its hello0 still goes; the
/// tunnel manager asks again later).
pub const MAX_PENDING_PEERS: usize = 64;
/// Peer sessions kept, at most (every node of a network of this size can
/// be talked to at once), whoever started them: the registry's node of a
/// 10,000-node network is asked by everybody. When a new one finds the
/// table full, the half-open ones (a hello0 sent, no certificate from the
/// peer yet: what a local process or a peer naming random prefixes would
/// fill the table with) are dropped, with their pending messages; then,
/// if need be, those idle the longest ([`EVICT_BATCH`] or a few more at
/// a time: all those last active in the same second as the batch's last). A
/// dropped peer costs a new handshake when it next talks.
pub const MAX_SESSIONS: usize = 2048;
/// Established sessions dropped at once when the table is full of them:
/// the search for the least recently active is paid once per batch, not
/// at every new session.
pub const EVICT_BATCH: usize = MAX_SESSIONS / 8;
/// A session with no datagram either way for this long (seconds) is
/// dropped with the peer's certificate, unless its peer is one we keep
/// (see [`PeerLink::prune_idle`]): a node that asks every node it has a
/// route to for its address, one every 30 s, would otherwise keep a
/// session (and a parsed certificate, a few KiB) with each of them for
/// good, up to [`MAX_SESSIONS`]. A later message to that peer costs a new
/// handshake, with one more round trip than if its certificate were kept.
pub const IDLE_SESSION: i64 = 600;

/// Seconds since the epoch, as the sessions count time.
fn seconds(now_us: u64) -> i64 {
    (now_us / 1_000_000) as i64
}

impl PeerLink {
    fn random12(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        (self.random)(&mut b);
        b
    }

    pub fn address_of(&self, prefix: &Prefix) -> Option<SocketAddr> {
        let ip = re6st_proto::prefix::node_address(&self.me.network, prefix).ok()?;
        Some(SocketAddr::new(IpAddr::V6(ip), PEER_PORT))
    }

    /// Datagrams to send `payload` to `prefix`: the message itself if we
    /// have a session, else a hello0 (the caller retries later). `now_us`:
    /// microseconds since the epoch.
    pub fn send(
        &mut self,
        prefix: Prefix,
        payload: &[u8],
        now_us: u64,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let now = seconds(now_us);
        let Some(to) = self.address_of(&prefix) else {
            return Vec::new();
        };
        if !self.peers.contains(&prefix) {
            self.make_room(&prefix);
        }
        let secret = new_secret(0, self.random12());
        let peer = self.peers.entry(prefix, secret);
        peer.last_active = now;
        if peer.connected(now) && peer.cert().is_some() {
            let mut out = Vec::new();
            send_on(peer, to, [payload], now, &mut out);
            out
        } else {
            if self.pending.contains_key(&prefix) || self.pending.len() < MAX_PENDING_PEERS {
                // A full queue keeps its first messages.
                let queue = self.pending.entry(prefix).or_insert_with(|| Pending {
                    since: now,
                    messages: heapless::Vec::new(),
                });
                let _ = queue.messages.push(payload.to_vec());
            }
            let Some(peer) = self.peers.get_mut(&prefix) else {
                return Vec::new();
            };
            match peer.hello0(&self.me.cert_der, now) {
                Ok(Some(h)) => {
                    peer.hello0_sent(now);
                    vec![(to, h)]
                }
                _ => Vec::new(),
            }
        }
    }

    /// Hello0s again, as their back-off allows (1 s, then twice as late
    /// each time), for the peers whose messages wait for a session: a
    /// hello0 lost on a route still settling would otherwise wait for the
    /// next message to that peer, which may never come (the registry's
    /// relay asks once). Messages waiting longer than [`PENDING_FOR`] are
    /// dropped. For the 1 s tick.
    pub fn retry_pending(&mut self, now_us: u64) -> Vec<(SocketAddr, Vec<u8>)> {
        let now = seconds(now_us);
        self.pending.retain(|_, q| now - q.since < PENDING_FOR);
        let mut out = Vec::new();
        let mut flushed = Vec::new();
        for (prefix, queue) in &self.pending {
            let (Some(to), Some(peer)) = (self.address_of(prefix), self.peers.get_mut(prefix))
            else {
                continue;
            };
            if peer.connected(now) && peer.cert().is_some() {
                // A session came up without a message from the peer to
                // flush the queue with: send it, no new handshake.
                send_on(peer, to, &queue.messages, now, &mut out);
                flushed.push(*prefix);
            } else if let Ok(Some(h)) = peer.hello0(&self.me.cert_der, now) {
                peer.hello0_sent(now);
                out.push((to, h));
            }
        }
        for p in flushed {
            self.pending.remove(&p);
        }
        out
    }

    /// Handles a datagram from `from` (not the local relay).
    pub fn receive(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now_us: u64,
    ) -> (Vec<(SocketAddr, Vec<u8>)>, Option<PeerEvent>) {
        let now = seconds(now_us);
        let IpAddr::V6(ip) = from.ip() else {
            return (Vec::new(), None);
        };
        let Ok(bits) = Prefix::from_ipv6(ip, 128) else {
            return (Vec::new(), None);
        };
        if !bits.starts_with(&self.me.network) || datagram.len() <= 4 {
            return (Vec::new(), None);
        }
        let sender = bits.suffix_from(self.me.network.len());
        let received = {
            let Some(peer) = self.peers.lookup(&sender) else {
                // Unknown: only a handshake can introduce it.
                return self.handshake(from, &sender, datagram, now_us);
            };
            peer.last_active = now;
            match peer.decode(datagram) {
                Received::Handshake { .. } => None,
                Received::Rejected => return (Vec::new(), None),
                Received::Message(m) => Some((peer.prefix, m.to_vec())),
            }
        };
        match received {
            None => self.handshake(from, &sender, datagram, now_us),
            Some((prefix, m)) => self.message(from, prefix, &m, now),
        }
    }

    fn handshake(
        &mut self,
        from: SocketAddr,
        sender: &Prefix,
        datagram: &[u8],
        now_us: u64,
    ) -> (Vec<(SocketAddr, Vec<u8>)>, Option<PeerEvent>) {
        let now = seconds(now_us);
        let (fresh, spare) = (self.random12(), self.random12());
        let mut tmp = re6st_proto::peer::Peer::new(*sender, [0; 20]);
        let Received::Handshake {
            seqno,
            protocol,
            body,
        } = tmp.decode(datagram)
        else {
            return (Vec::new(), None);
        };
        let action = handle_handshake(
            &self.me,
            &mut self.peers,
            sender,
            seqno,
            protocol,
            body,
            &self.crl,
            now,
            new_secret(now_us, fresh),
            new_secret(0, spare),
        );
        if let Some(p) = self.peers.lookup(sender).map(|p| {
            p.last_active = now;
            p.prefix
        }) {
            // A session the handshake just added may overfill the table.
            self.make_room(&p);
        }
        let out = match action {
            HandshakeAction::SendHello0(h) => {
                if let Some(p) = self.peers.lookup(sender) {
                    p.hello0_sent(now);
                }
                vec![(from, h)]
            }
            HandshakeAction::SendHello(h) => vec![(from, h)],
            HandshakeAction::SessionAccepted => {
                // Our version first, then what waited for the session.
                let version = [&[Code::Version as u8][..], &self.version].concat();
                let prefix = self.peers.lookup(sender).map(|p| p.prefix);
                let queued = prefix.and_then(|p| self.pending.remove(&p));
                let mut out = Vec::new();
                if let Some(peer) = self.peers.lookup(sender) {
                    // Not `sent`: a version gets no answer from a peer
                    // that has the same.
                    if let Ok(d) = peer.encode(&version) {
                        out.push((from, d));
                    }
                    let queued = queued.map(|q| q.messages).unwrap_or_default();
                    send_on(peer, from, &queued, now, &mut out);
                }
                out
            }
            HandshakeAction::Ignored(_) => Vec::new(),
        };
        (out, None)
    }

    /// Brings the table to at most [`MAX_SESSIONS`] sessions counting one
    /// for `peer` (which may not be in it yet, and is never dropped):
    /// half-open sessions first, then the least recently active.
    fn make_room(&mut self, peer: &Prefix) {
        let room =
            |peers: &PeerTable| peers.len() + usize::from(!peers.contains(peer)) <= MAX_SESSIONS;
        if room(&self.peers) {
            return;
        }
        self.peers
            .retain(|p| p.cert().is_some() || p.prefix == *peer);
        if !room(&self.peers) {
            // The batch's last activity, and all as idle (ties go too).
            let mut idle: Vec<i64> = (self.peers.iter())
                .filter(|p| p.prefix != *peer)
                .map(|p| p.last_active)
                .collect();
            idle.sort_unstable();
            if let Some(&cutoff) = idle.get(EVICT_BATCH - 1) {
                self.peers
                    .retain(|p| p.last_active > cutoff || p.prefix == *peer);
            }
        }
        let peers = &self.peers;
        self.pending.retain(|p, _| peers.contains(p));
    }

    /// Drops the sessions idle for [`IDLE_SESSION`] but those of the peers
    /// `keep` names (our tunnels' peers, say) and those with messages
    /// waiting; `now` in seconds.
    pub fn prune_idle(&mut self, now: i64, keep: impl Fn(&Prefix) -> bool) {
        let pending = &self.pending;
        self.peers.retain(|p| {
            now - p.last_active < IDLE_SESSION || keep(&p.prefix) || pending.contains_key(&p.prefix)
        });
    }

    /// Answers a message locally; used for peers and for the relay.
    pub fn answer(
        &self,
        from_peer: bool,
        msg: &Message<'_>,
    ) -> (Option<Vec<u8>>, Option<PeerEvent>) {
        let _ = from_peer;
        match msg.code {
            // Without an address yet, no answer: an empty one would read
            // as a query, and two such nodes would query each other for ever.
            Code::Address if msg.data.is_empty() && !self.my_address.is_empty() => {
                (Some(self.my_address.as_bytes().to_vec()), None)
            }
            Code::Info if msg.data.is_empty() => (Some(self.info.as_bytes().to_vec()), None),
            _ => (None, None),
        }
    }

    /// A decrypted session payload from `prefix`: replies and its event.
    /// `pub` for the fuzz target `node_core`, which feeds the core the
    /// events of session payloads without a real session to encrypt them.
    pub fn message(
        &mut self,
        from: SocketAddr,
        prefix: Prefix,
        payload: &[u8],
        now: i64,
    ) -> (Vec<(SocketAddr, Vec<u8>)>, Option<PeerEvent>) {
        let Ok(msg) = Message::decode(payload) else {
            // Empty: a keep-alive; nothing to answer.
            return (Vec::new(), None);
        };
        let event = match msg.code {
            _ if msg.forward && !msg.data.is_empty() => Some(PeerEvent::Forward(
                prefix,
                msg.code as u8,
                msg.data.to_vec(),
            )),
            Code::Address if !msg.data.is_empty() => Some(PeerEvent::Address(
                prefix,
                String::from_utf8_lossy(msg.data).into_owned(),
            )),
            Code::KillRequest | Code::KillResponse => Some(PeerEvent::Kill(prefix, msg.code as u8)),
            Code::Topology if msg.data.is_empty() => Some(PeerEvent::Topology(prefix, payload[0])),
            Code::Version if !msg.data.is_empty() => {
                Some(PeerEvent::Version(prefix, msg.data.to_vec()))
            }
            _ => None,
        };
        let (answer, _) = self.answer(true, &msg);
        let mut out = Vec::new();
        if let Some(p) = self.peers.get_mut(&prefix) {
            // The session works: what waited for it can go.
            let queued = self.pending.remove(&prefix).map(|q| q.messages);
            send_on(p, from, queued.unwrap_or_default(), now, &mut out);
            if let Some(a) = answer {
                // Same first byte: a forwarded request gets a forwarded
                // answer.
                send_on(p, from, [[&payload[..1], &a].concat()], now, &mut out);
            }
        }
        (out, event)
    }
}

/// Frames `payloads` on `peer`'s session, in order, for `to`, starting
/// the clock that declares the peer gone if it does not answer.
fn send_on<M: AsRef<[u8]>>(
    peer: &mut Peer,
    to: SocketAddr,
    payloads: impl IntoIterator<Item = M>,
    now: i64,
    out: &mut Vec<(SocketAddr, Vec<u8>)>,
) {
    for m in payloads {
        if let Ok(d) = peer.encode(m.as_ref()) {
            peer.sent(now);
            out.push((to, d));
        }
    }
}

/// Our unspecified-address bind for the peer socket.
pub fn bind_address() -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), PEER_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use re6st_testkit::Pki;

    fn link(pki: &Pki) -> PeerLink {
        let id = pki.node("1/16", 2);
        PeerLink {
            me: Identity::new(pki.ca.clone(), id.cert.clone(), id.key.clone()).unwrap(),
            peers: PeerTable::default(),
            crl: BTreeSet::new(),
            my_address: "198.18.0.2,1194,tcp".into(),
            version: vec![],
            info: String::new(),
            pending: Default::default(),
            random: |b| b.fill(7),
        }
    }

    /// Prefix number `i` of length 24 (any a local process may name).
    fn nth(i: u32) -> Prefix {
        Prefix::from_subnet(&format!("{i}/24")).unwrap()
    }

    /// Messages to 10,000 peers that never answer (what a relay flood
    /// asks): the sessions and pending messages stay at their caps, and
    /// established sessions are kept.
    #[test]
    fn sessions_and_pending_messages_stay_at_their_caps() {
        let pki = Pki::new("2001:db8::/32");
        let mut link = link(&pki);
        // An established session (a certificate known) is never evicted.
        let friend = pki.node("9/16", 3);
        link.peers
            .entry(nth(7), [0; 20])
            .set_cert(friend.cert.clone())
            .unwrap();
        let mut sent = 0;
        for i in 0..10_000 {
            sent += link
                .send(nth(1000 + i), &[Code::Address as u8], 100_000_000)
                .len();
            assert!(link.peers.len() <= MAX_SESSIONS);
            assert!(link.pending.len() <= MAX_PENDING_PEERS);
        }
        assert!(link.peers.get(&nth(7)).is_some());
        // Each new peer got its hello0 (evicting half-open sessions).
        assert_eq!(sent, 10_000);
        // A queue per peer is bounded too.
        for _ in 0..10 {
            link.send(nth(20_000), &[Code::Address as u8], 100_000_000);
        }
        let queue = link.pending.get(&nth(20_000));
        assert!(queue.map_or(0, |q| q.messages.len()) <= MAX_PENDING);
    }

    /// 10,000 hello0 datagrams from random prefixes of our network (a
    /// certificate that is not theirs): nothing enters the session table.
    #[test]
    fn hello0_from_random_prefixes_leaves_no_session() {
        let pki = Pki::new("2001:db8::/32");
        let mut link = link(&pki);
        let other = pki.node("5/16", 4);
        let der = other.cert.to_der().unwrap();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let sender = Prefix::from_subnet(&format!("{}/16", x % 65_536)).unwrap();
            let hello0 = re6st_proto::peer::Peer::new(sender, [0; 20])
                .hello0(&der, 0)
                .unwrap()
                .unwrap();
            let from = link.address_of(&sender).unwrap();
            link.receive(from, &hello0, 100_000_000);
            assert!(link.peers.len() <= MAX_SESSIONS);
        }
        assert!(link.peers.len() <= 1, "{}", link.peers.len());
        assert!(link.pending.is_empty());
    }

    /// Genuine peers (each with its own certificate) starting sessions
    /// with us, more than the table holds (the registry's node of a big
    /// network: everybody's first contact): the table stays at its cap,
    /// dropping those idle the longest, and a peer we talked to lately
    /// keeps its session.
    #[test]
    fn sessions_started_by_peers_stay_at_the_cap() {
        let pki = Pki::new("2001:db8::/32");
        let mut link = link(&pki);
        let key = re6st_testkit::rsa_key(1024);
        // Within the certificates' validity: from now on.
        #[allow(clippy::disallowed_methods)]
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
            + 60_000_000;
        let friend = nth(99_999);
        for i in 0..(MAX_SESSIONS + EVICT_BATCH + 10) as u32 {
            let now = t0 + u64::from(i) * 1_000_000;
            if i == 5 {
                link.peers
                    .entry(friend, [0; 20])
                    .set_cert(pki.node_with_key(&friend.to_subnet(), 9, &key).cert)
                    .unwrap();
            }
            if i % 100 == 0 {
                // We keep talking to the friend.
                link.send(friend, &[Code::Address as u8], now);
            }
            let sender = nth(1000 + i);
            let id = pki.node_with_key(&sender.to_subnet(), 10 + i, &key);
            let hello0 = re6st_proto::peer::Peer::new(sender, [0; 20])
                .hello0(&id.cert.to_der().unwrap(), 0)
                .unwrap()
                .unwrap();
            let (out, _) = link.receive(link.address_of(&sender).unwrap(), &hello0, now);
            assert_eq!(out.len(), 1, "peer {i} answered");
            assert!(
                link.peers.len() <= MAX_SESSIONS,
                "{} at {i}",
                link.peers.len()
            );
        }
        // The oldest went; the latest and the friend are there.
        assert!(link.peers.get(&nth(1000)).is_none());
        let last = nth(1000 + (MAX_SESSIONS + EVICT_BATCH + 9) as u32);
        assert!(link.peers.get(&last).is_some_and(|p| p.cert().is_some()));
        assert!(link.peers.get(&friend).is_some());
    }

    /// Sessions idle for [`IDLE_SESSION`] go, but those the caller keeps,
    /// those used lately and those with messages waiting.
    #[test]
    fn idle_sessions_are_dropped_but_kept_peers() {
        let pki = Pki::new("2001:db8::/32");
        let mut link = link(&pki);
        let t0 = 1_000_000;
        let us = |s: i64| s as u64 * 1_000_000;
        for i in 0..4 {
            link.send(nth(i), &[Code::Address as u8], us(t0));
        }
        // Messages to 0 and 1 wait no more (their peers never answered).
        link.retry_pending(us(t0 + PENDING_FOR));
        assert!(link.pending.is_empty());
        // 2 is used again later; 3 has a message waiting.
        link.send(nth(2), &[Code::Address as u8], us(t0 + IDLE_SESSION - 1));
        link.pending.remove(&nth(2));
        link.send(nth(3), &[Code::Address as u8], us(t0 + IDLE_SESSION - 1));
        link.prune_idle(t0 + IDLE_SESSION - 1, |_| false);
        assert_eq!(link.peers.len(), 4, "nothing idle for long enough yet");
        link.prune_idle(t0 + IDLE_SESSION, |p| *p == nth(1));
        let left: Vec<Prefix> = link.peers.iter().map(|p| p.prefix).collect();
        assert_eq!(left, [nth(1), nth(2), nth(3)]);
        // A datagram from a peer counts as use too.
        let later = t0 + 2 * IDLE_SESSION;
        let from = link.address_of(&nth(2)).unwrap();
        link.receive(from, &[0, 0, 0, 9, 1, 2, 3], us(later - 1));
        link.pending.clear();
        link.prune_idle(later, |_| false);
        let left: Vec<Prefix> = link.peers.iter().map(|p| p.prefix).collect();
        assert_eq!(left, [nth(2)]);
    }

    #[test]
    fn address_queries_get_our_address_or_nothing() {
        let pki = Pki::new("2001:db8::/32");
        let mut link = link(&pki);
        let query = Message::decode(&[Code::Address as u8]).unwrap();
        assert_eq!(
            link.answer(true, &query).0,
            Some(b"198.18.0.2,1194,tcp".to_vec())
        );
        link.my_address.clear();
        assert_eq!(link.answer(true, &query).0, None);
    }
}
