//! The peer address cache (upstream `cache.py`): addresses of peers we
//! heard of, kept across restarts so that a node rejoins without the
//! registry. Peers that failed are skipped for the rest of the session;
//! our own announced address is kept too.
//!
//! Persisted with postcard behind a magic and version ([`PeerCache::to_bytes`]);
//! the node's `state::peers` writes it atomically.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use re6st_proto::prefix::Prefix;
use serde::{Deserialize, Serialize};

/// Upstream keeps this many peers.
pub const DEFAULT_CAPACITY: usize = 200;

const MAGIC: &[u8; 8] = b"re6stpc1";

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Persisted {
    my_address: Option<String>,
    peers: Vec<(Prefix, String)>,
}

/// Why a saved cache cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("bad magic")]
    BadMagic,
    #[error(transparent)]
    Body(#[from] postcard::Error),
}

#[derive(Debug, Clone)]
pub struct PeerCache {
    peers: BTreeMap<Prefix, String>,
    my_address: Option<String>,
    /// Peers tried and failed (or being tried) this session.
    trying: BTreeSet<Prefix>,
    /// When each cached peer was last seen working (it answered us, or our
    /// tunnel to it came up), on the caller's clock. Not persisted: peers
    /// loaded from disk count as never seen, so fresher ones replace them.
    seen: BTreeMap<Prefix, i64>,
    capacity: usize,
}

impl PeerCache {
    pub fn new(capacity: usize) -> PeerCache {
        PeerCache {
            peers: BTreeMap::new(),
            my_address: None,
            trying: BTreeSet::new(),
            seen: BTreeMap::new(),
            capacity,
        }
    }

    /// A cached peer was seen working at `now`.
    pub fn seen(&mut self, prefix: Prefix, now: i64) {
        if self.peers.contains_key(&prefix) {
            self.seen.insert(prefix, now);
        }
    }

    /// When a cached peer was last seen working, if ever.
    pub fn last_seen(&self, prefix: &Prefix) -> Option<i64> {
        self.seen.get(prefix).copied()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn my_address(&self) -> Option<&str> {
        self.my_address.as_deref()
    }

    pub fn set_my_address(&mut self, address: Option<String>) {
        self.my_address = address.filter(|a| !a.is_empty());
    }

    /// Records a peer's addresses. With `set_preferred`, `address` (the
    /// one that just worked) goes first among the known ones; otherwise the
    /// known order is kept and new entries go last.
    pub fn add_peer(
        &mut self,
        prefix: Prefix,
        address: &str,
        set_preferred: bool,
        random: &mut dyn FnMut() -> u64,
    ) {
        let merged = match self.peers.get(&prefix) {
            Some(old) => {
                let (preferred, list) = if set_preferred {
                    (address, old.as_str())
                } else {
                    (old.as_str(), address)
                };
                let preferred: Vec<&str> = preferred.split(';').collect();
                let mut entries: Vec<&str> = list.split(';').collect();
                entries.sort_by_key(|a| {
                    preferred
                        .iter()
                        .position(|p| p == a)
                        .unwrap_or(preferred.len())
                });
                entries.join(";")
            }
            None => {
                self.minimize(self.capacity.saturating_sub(1), random);
                address.to_owned()
            }
        };
        self.peers.insert(prefix, merged);
        self.trying.remove(&prefix);
    }

    /// Marks a peer as being tried (skipped by [`Self::address`]) or not.
    /// Only cached peers are marked (a mark on another one would mean
    /// nothing: it has no address to skip), so that the marks are bounded
    /// by the cache's capacity.
    pub fn connecting(&mut self, prefix: Prefix, connecting: bool) {
        if connecting {
            if self.peers.contains_key(&prefix) {
                self.trying.insert(prefix);
            }
        } else {
            self.trying.remove(&prefix);
        }
    }

    pub fn reset_connecting(&mut self) {
        self.trying.clear();
    }

    /// A peer's addresses, unless it is being tried or failed.
    pub fn address(&self, prefix: &Prefix) -> Option<&str> {
        (!self.trying.contains(prefix))
            .then(|| self.peers.get(prefix).map(String::as_str))
            .flatten()
    }

    /// Peers other than `me`, those that failed (`failed`) or the others,
    /// in random order.
    pub fn peer_list(
        &self,
        me: &Prefix,
        failed: bool,
        random: &mut dyn FnMut() -> u64,
    ) -> Vec<(Prefix, String)> {
        let mut v: Vec<(u64, Prefix, String)> = self
            .peers
            .iter()
            .filter(|(p, _)| *p != me && self.trying.contains(p) == failed)
            .map(|(p, a)| (random(), *p, a.clone()))
            .collect();
        v.sort_by_key(|(r, _, _)| *r);
        v.into_iter().map(|(_, p, a)| (p, a)).collect()
    }

    /// Keeps at most `size` peers, dropping failed ones first, then those
    /// seen working longest ago (never seen first), ties at random: after a
    /// loss, the peers seen last are the likeliest to be alive.
    pub fn minimize(&mut self, size: usize, random: &mut dyn FnMut() -> u64) {
        if self.peers.len() <= size {
            return;
        }
        let mut order: Vec<(bool, Reverse<Option<i64>>, u64, Prefix)> = self
            .peers
            .keys()
            .map(|p| {
                let seen = Reverse(self.seen.get(p).copied());
                (self.trying.contains(p), seen, random(), *p)
            })
            .collect();
        order.sort();
        for (_, _, _, p) in order.into_iter().skip(size) {
            self.peers.remove(&p);
            self.trying.remove(&p);
            self.seen.remove(&p);
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let persisted = Persisted {
            my_address: self.my_address.clone(),
            peers: self.peers.iter().map(|(p, a)| (*p, a.clone())).collect(),
        };
        let mut out = MAGIC.to_vec();
        // Serializing plain owned data into a Vec cannot fail.
        out.extend(postcard::to_allocvec(&persisted).unwrap_or_default());
        out
    }

    pub fn from_bytes(data: &[u8], capacity: usize) -> Result<PeerCache, DecodeError> {
        let body = data.strip_prefix(&MAGIC[..]).ok_or(DecodeError::BadMagic)?;
        let p: Persisted = postcard::from_bytes(body)?;
        let mut c = PeerCache::new(capacity);
        c.my_address = p.my_address;
        c.peers = p.peers.into_iter().take(capacity).collect();
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        Prefix::from_subnet(s).unwrap()
    }

    fn rng() -> impl FnMut() -> u64 {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// The marks of peers being tried are bounded by the cache's capacity:
    /// prefixes the cache does not hold (any a peer names) are not marked.
    #[test]
    fn trying_marks_stay_within_the_cache() {
        let mut r = rng();
        let mut c = PeerCache::new(3);
        for i in 1..=3 {
            c.add_peer(p(&format!("{i}/16")), "198.18.0.9,1194,udp", false, &mut r);
        }
        for i in 1..=10_000u32 {
            c.connecting(Prefix::from_subnet(&format!("{i}/16")).unwrap(), true);
        }
        assert_eq!(c.trying.len(), 3);
        assert_eq!(c.address(&p("2/16")), None);
        c.connecting(p("2/16"), false);
        assert!(c.address(&p("2/16")).is_some());
    }

    /// A full cache makes room by dropping the peers seen working longest
    /// ago (never seen first), not random ones: after a loss, the peers
    /// seen last are the likeliest alive. (Seen failing with the old
    /// random eviction: it kept peer 1, seen longest ago.)
    #[test]
    fn a_full_cache_drops_the_peers_seen_longest_ago() {
        let mut r = rng();
        let mut c = PeerCache::new(10);
        for i in 1..=10 {
            let prefix = p(&format!("{i}/16"));
            c.add_peer(prefix, "198.18.0.9,1194,udp", false, &mut r);
            // Peers 1 to 4 seen long ago, 5 never, 6 to 10 lately.
            match i {
                1..=4 => c.seen(prefix, i),
                5 => {}
                _ => c.seen(prefix, 1000 + i),
            }
        }
        for i in 11..=15 {
            let prefix = p(&format!("{i}/16"));
            c.add_peer(prefix, "198.18.0.9,1194,udp", false, &mut r);
            c.seen(prefix, 2000 + i);
        }
        assert_eq!(c.len(), 10);
        for i in 1..=15 {
            let kept = c.last_seen(&p(&format!("{i}/16"))).is_some();
            assert_eq!(kept, i > 5, "peer {i}");
        }
        assert_eq!(c.address(&p("5/16")), None, "never seen: dropped first");
    }

    #[test]
    fn semantics_like_upstream() {
        let mut r = rng();
        let mut c = PeerCache::new(3);
        c.add_peer(
            p("1/16"),
            "198.18.0.1,1194,udp;198.18.0.1,1194,tcp",
            false,
            &mut r,
        );
        // A working address becomes preferred.
        c.add_peer(p("1/16"), "198.18.0.1,1194,tcp", true, &mut r);
        assert_eq!(
            c.address(&p("1/16")),
            Some("198.18.0.1,1194,tcp;198.18.0.1,1194,udp")
        );
        // Failed peers are skipped for the session.
        c.connecting(p("1/16"), true);
        assert_eq!(c.address(&p("1/16")), None);
        assert_eq!(c.peer_list(&p("9/16"), true, &mut r).len(), 1);
        assert!(c.peer_list(&p("9/16"), false, &mut r).is_empty());
        // Bounded: failed peers go first.
        for i in 2..=4 {
            c.add_peer(p(&format!("{i}/16")), "198.18.0.9,1194,udp", false, &mut r);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.address(&p("1/16")), None);
        assert!(
            c.peer_list(&p("2/16"), false, &mut r)
                .iter()
                .all(|(q, _)| *q != p("2/16")),
            "never ourselves"
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut d = MAGIC.to_vec();
            d.extend(data);
            let _ = PeerCache::from_bytes(&d, 10);
        }
    }
}
