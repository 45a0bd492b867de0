//! Prefix allocation: the `cert` table is a binary tree of node prefixes
//! whose leaves partition the network. A free leaf (no certificate) is
//! split until a prefix of the wanted length comes out; siblings that are
//! both free again are merged back into their parent.
//!
//! The logic works over [`PrefixTree`], an abstract view of that table, so
//! it is tested against an in-memory tree and run against SQLite unchanged.

use re6st_proto::prefix::{Prefix, PrefixError};
use thiserror::Error;

/// What occupies a leaf of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// No certificate: available for allocation and merging.
    Free,
    /// A certificate, or the `reserved` marker.
    Taken,
}

/// The operations allocation needs from the leaf table.
pub trait PrefixTree {
    type Error: std::error::Error + 'static;

    /// The longest free leaf that starts with `community` and is at most
    /// `max_len` bits long (the smallest such prefix among equals).
    fn longest_free_within(
        &mut self,
        community: &Prefix,
        max_len: u8,
    ) -> Result<Option<Prefix>, Self::Error>;

    /// The leaf that `p` starts with, if `p` is not split further.
    fn leaf_covering(&mut self, p: &Prefix) -> Result<Option<(Prefix, Leaf)>, Self::Error>;

    /// Renames a leaf (keeping its contents).
    fn rename(&mut self, from: &Prefix, to: &Prefix) -> Result<(), Self::Error>;

    fn insert_free(&mut self, p: &Prefix) -> Result<(), Self::Error>;

    fn delete(&mut self, p: &Prefix) -> Result<(), Self::Error>;

    /// Marks a free leaf as never to be allocated.
    fn reserve(&mut self, p: &Prefix) -> Result<(), Self::Error>;

    /// The greatest length of a free leaf strictly shorter than `below`.
    fn longest_free_len_below(&mut self, below: u16) -> Result<Option<u8>, Self::Error>;

    /// Every free leaf of exactly `len` bits, in ascending order.
    fn free_leaves_of_len(&mut self, len: u8) -> Result<Vec<Prefix>, Self::Error>;
}

#[derive(Debug, Error)]
pub enum AllocError<E: std::error::Error + 'static> {
    #[error("no free /{0} prefix left")]
    Exhausted(u8),
    #[error("cannot allocate a /{wanted} prefix in a network that leaves {available} bits")]
    BadLength { wanted: u16, available: u8 },
    #[error("{0}")]
    Prefix(#[from] PrefixError),
    #[error(transparent)]
    Store(E),
}

/// Allocates a free prefix of `prefix_len` bits after `community`, splitting
/// the tree as needed, and returns it (its leaf is still free: the caller
/// stores the certificate).
///
/// A prefix of the full host length whose bits after the community are all
/// zero is reserved instead of being handed out, and another one is taken.
pub fn allocate<T: PrefixTree>(
    tree: &mut T,
    network_len: u8,
    community: &Prefix,
    prefix_len: u8,
) -> Result<Prefix, AllocError<T::Error>> {
    let max_len = 128u8.saturating_sub(network_len);
    let wanted = u16::from(community.len()) + u16::from(prefix_len);
    if prefix_len == 0 || wanted > u16::from(max_len) {
        return Err(AllocError::BadLength {
            wanted,
            available: max_len,
        });
    }
    let wanted = wanted as u8;
    loop {
        let mut leaf = match tree
            .longest_free_within(community, wanted)
            .map_err(AllocError::Store)?
        {
            Some(p) => p,
            // Nothing free inside the community: it may not be split yet,
            // i.e. lie inside a single free leaf.
            None => match tree.leaf_covering(community).map_err(AllocError::Store)? {
                Some((p, Leaf::Free)) => p,
                _ => return Err(AllocError::Exhausted(wanted)),
            },
        };
        while leaf.len() < wanted {
            // Follow the community's bits, then zeros; the other child
            // becomes a free sibling.
            let bit = community.bit(leaf.len()).unwrap_or(false);
            tree.rename(&leaf, &leaf.push(!bit)?)
                .map_err(AllocError::Store)?;
            leaf = leaf.push(bit)?;
            tree.insert_free(&leaf).map_err(AllocError::Store)?;
        }
        let host_part = leaf.suffix_from(community.len());
        if leaf.len() < max_len || host_part.value() != 0 {
            return Ok(leaf);
        }
        tree.reserve(&leaf).map_err(AllocError::Store)?;
    }
}

/// Merges free siblings into their parent, from the longest prefixes up,
/// until no two free leaves are siblings.
pub fn merge<T: PrefixTree>(tree: &mut T) -> Result<usize, T::Error> {
    let mut merged = 0;
    let mut below = 129u16;
    while let Some(len) = tree.longest_free_len_below(below)? {
        below = u16::from(len);
        if len == 0 {
            break;
        }
        let mut previous: Option<Prefix> = None;
        for p in tree.free_leaves_of_len(len)? {
            let parent = p.truncate(len - 1);
            match previous {
                Some(prev) if prev.truncate(len - 1) == parent => {
                    tree.delete(&p)?;
                    tree.rename(&prev, &parent)?;
                    merged += 1;
                    previous = None;
                }
                _ => previous = Some(p),
            }
        }
    }
    Ok(merged)
}

/// Whether configured communities are usable with the current tree: no
/// community may start with another, and none may lie inside an allocated
/// leaf. Returns the first problem found.
pub fn check_communities<T: PrefixTree>(
    tree: &mut T,
    communities: &[Prefix],
) -> Result<Result<(), String>, T::Error> {
    let mut sorted = communities.to_vec();
    sorted.sort();
    let mut previous: Option<&Prefix> = None;
    for c in &sorted {
        if let Some(prev) = previous {
            if c.starts_with(prev) {
                return Ok(Err(format!("communities {prev} and {c} overlap")));
            }
        }
        if let Some((leaf, Leaf::Taken)) = tree.leaf_covering(c)? {
            return Ok(Err(format!("prefix {leaf} contains community {c}")));
        }
        previous = Some(c);
    }
    Ok(Ok(()))
}

/// An in-memory [`PrefixTree`], for tests and simulations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryTree {
    pub leaves: std::collections::BTreeMap<Prefix, Leaf>,
}

impl Default for MemoryTree {
    /// One free leaf: the whole network.
    fn default() -> Self {
        MemoryTree {
            leaves: [(Prefix::EMPTY, Leaf::Free)].into_iter().collect(),
        }
    }
}

/// Errors of [`MemoryTree`]: a misuse of the tree.
#[derive(Debug, Error)]
#[error("in-memory prefix tree: {0}")]
pub struct MemoryTreeError(String);

impl MemoryTree {
    pub fn take(&mut self, p: &Prefix) {
        self.leaves.insert(*p, Leaf::Taken);
    }

    pub fn release(&mut self, p: &Prefix) {
        self.leaves.insert(*p, Leaf::Free);
    }
}

impl PrefixTree for MemoryTree {
    type Error = MemoryTreeError;

    fn longest_free_within(
        &mut self,
        community: &Prefix,
        max_len: u8,
    ) -> Result<Option<Prefix>, Self::Error> {
        Ok(self
            .leaves
            .iter()
            .filter(|(p, l)| **l == Leaf::Free && p.starts_with(community) && p.len() <= max_len)
            .map(|(p, _)| *p)
            .max_by(|a, b| a.len().cmp(&b.len()).then(b.cmp(a))))
    }

    fn leaf_covering(&mut self, p: &Prefix) -> Result<Option<(Prefix, Leaf)>, Self::Error> {
        Ok(self
            .leaves
            .iter()
            .find(|(leaf, _)| p.starts_with(leaf))
            .map(|(leaf, l)| (*leaf, *l)))
    }

    fn rename(&mut self, from: &Prefix, to: &Prefix) -> Result<(), Self::Error> {
        let l = self
            .leaves
            .remove(from)
            .ok_or_else(|| MemoryTreeError(format!("no leaf {from}")))?;
        if self.leaves.insert(*to, l).is_some() {
            return Err(MemoryTreeError(format!("leaf {to} exists")));
        }
        Ok(())
    }

    fn insert_free(&mut self, p: &Prefix) -> Result<(), Self::Error> {
        if self.leaves.insert(*p, Leaf::Free).is_some() {
            return Err(MemoryTreeError(format!("leaf {p} exists")));
        }
        Ok(())
    }

    fn delete(&mut self, p: &Prefix) -> Result<(), Self::Error> {
        self.leaves
            .remove(p)
            .map(|_| ())
            .ok_or_else(|| MemoryTreeError(format!("no leaf {p}")))
    }

    fn reserve(&mut self, p: &Prefix) -> Result<(), Self::Error> {
        self.take(p);
        Ok(())
    }

    fn longest_free_len_below(&mut self, below: u16) -> Result<Option<u8>, Self::Error> {
        Ok(self
            .leaves
            .iter()
            .filter(|(p, l)| **l == Leaf::Free && u16::from(p.len()) < below)
            .map(|(p, _)| p.len())
            .max())
    }

    fn free_leaves_of_len(&mut self, len: u8) -> Result<Vec<Prefix>, Self::Error> {
        Ok(self
            .leaves
            .iter()
            .filter(|(p, l)| **l == Leaf::Free && p.len() == len)
            .map(|(p, _)| *p)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    /// The leaves cover the whole space exactly once.
    fn assert_partition(tree: &MemoryTree) {
        let total: f64 = tree
            .leaves
            .keys()
            .map(|p| 0.5f64.powi(i32::from(p.len())))
            .sum();
        assert!((total - 1.0).abs() < 1e-12, "leaves {:?}", tree.leaves);
        let keys: Vec<_> = tree.leaves.keys().collect();
        for w in keys.windows(2) {
            assert!(!w[1].starts_with(w[0]), "{} inside {}", w[1], w[0]);
        }
    }

    #[test]
    fn first_allocations_split_from_zero() {
        let mut t = MemoryTree::default();
        // Network /112 leaves 16 bits: a /16 allocation is the full length.
        let a = allocate(&mut t, 112, &Prefix::EMPTY, 16).unwrap();
        // The all-zero /16 is reserved, so the first one handed out is 1.
        assert_eq!(a, p("0000000000000001"));
        assert_eq!(t.leaves[&p("0000000000000000")], Leaf::Taken);
        t.take(&a);
        let b = allocate(&mut t, 112, &Prefix::EMPTY, 16).unwrap();
        assert_eq!(b, p("0000000000000010"));
        assert_partition(&t);
    }

    #[test]
    fn zero_prefix_allowed_when_shorter_than_host_part() {
        let mut t = MemoryTree::default();
        let a = allocate(&mut t, 32, &Prefix::EMPTY, 16).unwrap();
        assert_eq!(a, p("0000000000000000"));
        assert_partition(&t);
    }

    #[test]
    fn prefers_longest_free_leaf() {
        let mut t = MemoryTree::default();
        let a = allocate(&mut t, 32, &Prefix::EMPTY, 8).unwrap();
        t.take(&a);
        // A /4 request must not split the free /8 sibling's neighbourhood
        // more than needed: it takes the free /4 "0001".
        let b = allocate(&mut t, 32, &Prefix::EMPTY, 4).unwrap();
        assert_eq!(b, p("0001"));
        t.take(&b);
        // A /8 request reuses the free /8 sibling of the first one.
        let c = allocate(&mut t, 32, &Prefix::EMPTY, 8).unwrap();
        assert_eq!(c, p("00000001"));
        assert_partition(&t);
    }

    #[test]
    fn allocation_inside_community() {
        let mut t = MemoryTree::default();
        let community = p("101");
        let a = allocate(&mut t, 32, &community, 4).unwrap();
        assert_eq!(a, p("1010000"));
        t.take(&a);
        let b = allocate(&mut t, 32, &community, 4).unwrap();
        assert_eq!(b, p("1010001"));
        t.take(&b);
        // Another community is allocated from its own subtree.
        let c = allocate(&mut t, 32, &p("0"), 4).unwrap();
        assert_eq!(c, p("00000"));
        assert_partition(&t);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let mut t = MemoryTree::default();
        // 2 host bits: 00 reserved, 01, 10, 11 allocatable.
        let mut got = vec![];
        for _ in 0..3 {
            let a = allocate(&mut t, 126, &Prefix::EMPTY, 2).unwrap();
            t.take(&a);
            got.push(a.to_string());
        }
        assert_eq!(got, ["01", "10", "11"]);
        assert!(matches!(
            allocate(&mut t, 126, &Prefix::EMPTY, 2),
            Err(AllocError::Exhausted(2))
        ));
        assert!(matches!(
            allocate(&mut t, 126, &Prefix::EMPTY, 3),
            Err(AllocError::BadLength { .. })
        ));
        assert!(matches!(
            allocate(&mut t, 126, &Prefix::EMPTY, 0),
            Err(AllocError::BadLength { .. })
        ));
    }

    #[test]
    fn community_exhausted_when_split_and_full() {
        let mut t = MemoryTree::default();
        let community = p("1");
        // 2 host bits: "10" is all-zero after the community, so reserved.
        let a = allocate(&mut t, 126, &community, 1).unwrap();
        assert_eq!(a, p("11"));
        t.take(&a);
        assert!(matches!(
            allocate(&mut t, 126, &community, 1),
            Err(AllocError::Exhausted(2))
        ));
        assert_eq!(t.leaves[&p("10")], Leaf::Taken);
        assert_partition(&t);
    }

    #[test]
    fn merge_restores_single_leaf() {
        let mut t = MemoryTree::default();
        let mut allocated = vec![];
        for len in [4u8, 8, 8, 16, 3] {
            let a = allocate(&mut t, 32, &Prefix::EMPTY, len).unwrap();
            t.take(&a);
            allocated.push(a);
        }
        assert_partition(&t);
        for a in &allocated[..2] {
            t.release(a);
        }
        merge(&mut t).unwrap();
        assert_partition(&t);
        for a in &allocated[2..] {
            t.release(a);
        }
        merge(&mut t).unwrap();
        assert_eq!(t, MemoryTree::default());
    }

    #[test]
    fn merge_keeps_taken_siblings() {
        let mut t = MemoryTree::default();
        let a = allocate(&mut t, 32, &Prefix::EMPTY, 2).unwrap();
        t.take(&a);
        assert_eq!(merge(&mut t).unwrap(), 0);
        assert_eq!(t.leaves.len(), 3);
        assert_eq!(t.leaves[&p("1")], Leaf::Free);
        assert_eq!(t.leaves[&p("01")], Leaf::Free);
    }

    #[test]
    fn communities_checked() {
        let mut t = MemoryTree::default();
        assert!(check_communities(&mut t, &[p("10"), p("11")])
            .unwrap()
            .is_ok());
        assert!(check_communities(&mut t, &[p("1"), p("11")])
            .unwrap()
            .is_err());
        let a = allocate(&mut t, 32, &Prefix::EMPTY, 2).unwrap();
        t.take(&a);
        assert!(check_communities(&mut t, &[p("0001")]).unwrap().is_err());
        assert!(check_communities(&mut t, &[p("01")]).unwrap().is_ok());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc { community: u8, len: u8 },
        Free(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 1u8..8).prop_map(|(community, len)| Op::Alloc { community, len }),
            any::<usize>().prop_map(Op::Free),
        ]
    }

    proptest! {
        /// Random allocations and releases never hand out overlapping
        /// prefixes, keep the tree a partition, and merging everything
        /// back yields the initial tree.
        #[test]
        fn allocations_never_overlap(ops in proptest::collection::vec(op(), 1..60)) {
            let communities = [p("0"), p("10"), p("11")];
            let mut t = MemoryTree::default();
            let mut live: Vec<Prefix> = vec![];
            for o in ops {
                match o {
                    Op::Alloc { community, len } => {
                        let c = communities[usize::from(community)];
                        // Network /120: 8 host bits, so exhaustion happens.
                        match allocate(&mut t, 120, &c, len) {
                            Ok(a) => {
                                prop_assert!(a.starts_with(&c));
                                prop_assert_eq!(usize::from(a.len()), usize::from(c.len() + len));
                                for b in &live {
                                    prop_assert!(!a.starts_with(b) && !b.starts_with(&a));
                                }
                                t.take(&a);
                                live.push(a);
                            }
                            Err(AllocError::Exhausted(_)) | Err(AllocError::BadLength { .. }) => {}
                            Err(e) => return Err(TestCaseError::fail(e.to_string())),
                        }
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let a = live.swap_remove(i % live.len());
                        t.release(&a);
                        merge(&mut t).unwrap();
                    }
                    Op::Free(_) => {}
                }
                assert_partition(&t);
            }
            for a in live.drain(..) {
                t.release(&a);
            }
            // Reserved all-zero prefixes stay; release them too to compare.
            let reserved: Vec<Prefix> = t.leaves.iter()
                .filter(|(_, l)| **l == Leaf::Taken).map(|(p, _)| *p).collect();
            for r in reserved {
                prop_assert_eq!(r.suffix_from(0).len(), 8);
                t.release(&r);
            }
            merge(&mut t).unwrap();
            prop_assert_eq!(t, MemoryTree::default());
        }
    }
}
