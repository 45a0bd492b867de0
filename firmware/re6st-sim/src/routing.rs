//! Babel, approximated: every node routes each destination along a
//! shortest path of the tunnel graph. A drained tunnel (its client's
//! babel silent on it: its link-quality cost climbs by doubling, far
//! above any ordinary path within seconds) is used only when there is no
//! other way: paths are ranked by (drained tunnels crossed, hops),
//! lexicographically. Ties go to whichever neighbour the search reaches
//! first, as babel keeps the route it already has.
//!
//! [`Router`] keeps its buffers between searches: a routing view costs one
//! O(N + E) search and an O(N) scan, with no clearing of per-node arrays.

use re6st_node_core::tunnel::RoutingView;

use crate::graph::{Graph, Link};
use crate::ids::prefix;

/// Interface of a node's OpenVPN server for a protocol (shared by all the
/// clients of that server, as the tap of upstream's servers).
pub fn server_iface(proto: u8) -> &'static str {
    if proto == 0 {
        "re6stnet-udp"
    } else {
        "re6stnet-tcp"
    }
}

/// What a search knows of a node, in one cache line access.
#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    /// `stamp == epoch`: reached by the current search.
    stamp: u32,
    hops: u16,
    /// First hop of the route, as an index into `slots`.
    slot: u16,
}

#[derive(Debug, Default)]
pub struct Router {
    marks: Vec<Mark>,
    epoch: u32,
    /// The source's tunnels.
    slots: Vec<Link>,
    queue: Vec<u32>,
    /// Entry points of the current and the next rank: (hops, node, slot).
    seeds: Vec<(u16, u32, u16)>,
    next_seeds: Vec<(u16, u32, u16)>,
    /// Destinations routed through each slot (by the view being built).
    per_slot: Vec<usize>,
}

const NO_SLOT: u16 = u16::MAX;

impl Router {
    fn reset(&mut self, n: usize) {
        if self.marks.len() != n {
            self.marks = vec![Mark::default(); n];
            self.epoch = 0;
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(Mark::default());
            self.epoch = 1;
        }
    }

    fn settled(&self, v: u32) -> bool {
        self.marks[v as usize].stamp == self.epoch
    }

    fn settle(&mut self, v: u32, hops: u16, slot: u16) {
        self.marks[v as usize] = Mark {
            stamp: self.epoch,
            hops,
            slot,
        };
        self.queue.push(v);
    }

    /// Routes of `src`: afterwards, every reachable node is stamped with
    /// its hop count and first hop.
    pub fn search(&mut self, g: &Graph, src: u32) {
        self.reset(g.nodes() as usize);
        self.queue.clear();
        self.marks[src as usize] = Mark {
            stamp: self.epoch,
            hops: 0,
            slot: NO_SLOT,
        };
        self.slots.clear();
        self.slots.extend_from_slice(g.adj(src));
        self.seeds.clear();
        self.next_seeds.clear();
        for (k, l) in self.slots.iter().enumerate() {
            let s = (1, l.peer, k as u16);
            if l.drained {
                self.next_seeds.push(s);
            } else {
                self.seeds.push(s);
            }
        }
        loop {
            self.rank(g);
            if self.next_seeds.is_empty() {
                break;
            }
            std::mem::swap(&mut self.seeds, &mut self.next_seeds);
            self.next_seeds.clear();
        }
    }

    /// One rank (number of drained tunnels crossed): a breadth-first
    /// search from `seeds`, each entering at its own hop count.
    fn rank(&mut self, g: &Graph) {
        let mut seeds = std::mem::take(&mut self.seeds);
        seeds.sort_by_key(|s| s.0);
        self.queue.clear();
        let (mut head, mut si) = (0, 0);
        loop {
            // Seeds enter before any node that would label them farther.
            let limit = match self.queue.get(head) {
                Some(&u) => self.marks[u as usize].hops.saturating_add(1),
                None if si < seeds.len() => seeds[si].0,
                None => break,
            };
            while si < seeds.len() && seeds[si].0 <= limit {
                let (h, v, s) = seeds[si];
                si += 1;
                if !self.settled(v) {
                    self.settle(v, h, s);
                }
            }
            let Some(&u) = self.queue.get(head) else {
                continue;
            };
            head += 1;
            let Mark { hops, slot: s, .. } = self.marks[u as usize];
            let (h, epoch) = (hops + 1, self.epoch);
            for l in g.adj(u) {
                let m = &mut self.marks[l.peer as usize];
                if m.stamp == epoch {
                    continue;
                }
                if l.drained {
                    self.next_seeds.push((h, l.peer, s));
                } else {
                    *m = Mark {
                        stamp: epoch,
                        hops: h,
                        slot: s,
                    };
                    self.queue.push(l.peer);
                }
            }
        }
        seeds.clear();
        self.seeds = seeds;
    }

    /// Hops from the last search's source (`None`: unreachable).
    pub fn hops(&self, v: u32) -> Option<u16> {
        self.settled(v).then(|| self.marks[v as usize].hops)
    }

    /// The neighbour the last search's route to `v` goes through.
    pub fn first_hop(&self, v: u32) -> Option<u32> {
        let s = self.marks.get(v as usize)?.slot;
        (self.settled(v) && s != NO_SLOT).then(|| self.slots[s as usize].peer)
    }

    /// What babeld would tell `src`'s tunnel manager now.
    pub fn view(&mut self, g: &Graph, src: u32) -> RoutingView {
        self.search(g, src);
        self.per_slot.clear();
        self.per_slot.resize(self.slots.len(), 0);
        let mut known = Vec::new();
        for v in 0..g.nodes() {
            if v != src && self.settled(v) {
                let p = prefix(v);
                known.push(p);
                self.per_slot[self.marks[v as usize].slot as usize] += 1;
            }
        }
        let mut view = RoutingView {
            // Scanned in index order, which is prefix order: a cheap build.
            known: known.into_iter().collect(),
            ..Default::default()
        };
        for (
            k,
            &Link {
                peer: n, tunnel: t, ..
            },
        ) in self.slots.iter().enumerate()
        {
            let count = self.per_slot[k];
            view.neighbours.insert(prefix(n));
            let iface = match g.tunnel(t) {
                Some(x) if x.client == src => x.iface.clone(),
                Some(x) => server_iface(x.proto).to_owned(),
                None => continue,
            };
            *view.routes_per_iface.entry(iface.clone()).or_default() += count;
            // Per-link counts: a drain completes only once the peer is seen
            // again on that very tunnel with nothing routed through it.
            *view.links.entry((iface, prefix(n))).or_default() += count;
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0 - 1 - 2 - 3 and 0 - 3 directly (a square).
    fn square() -> (Graph, u32) {
        let mut g = Graph::new(4);
        let mut last = 0;
        for (k, (a, b)) in [(0, 1), (1, 2), (2, 3), (0, 3)].into_iter().enumerate() {
            last = g.attempt(a, b, &format!("re6stnet{}", k + 1), 0, k as u64);
            g.link(last);
        }
        (g, last)
    }

    #[test]
    fn shortest_paths_and_first_hops() {
        let (g, _) = square();
        let mut r = Router::default();
        let v = r.view(&g, 0);
        assert_eq!(v.known, [1, 2, 3].map(prefix).into());
        assert_eq!(v.neighbours, [1, 3].map(prefix).into());
        let via1 = v.links[&("re6stnet1".to_owned(), prefix(1))];
        let via3 = v.links[&("re6stnet4".to_owned(), prefix(3))];
        // 2 is two hops either way: one of them, not both.
        assert_eq!((via1 + via3, via1.min(via3)), (3, 1));
        assert_eq!(r.hops(2), Some(2));
        assert_eq!(
            v.routes_per_iface["re6stnet1"] + v.routes_per_iface["re6stnet4"],
            3
        );
        // Node 3 is the server of 2 -> 3 and 0 -> 3: one tap for both.
        let v3 = r.view(&g, 3);
        assert_eq!(v3.routes_per_iface["re6stnet-udp"], 3);
    }

    #[test]
    fn a_drained_tunnel_keeps_only_routes_with_no_other_way() {
        let (mut g, t03) = square();
        g.set_drained(t03, true);
        let mut r = Router::default();
        let v = r.view(&g, 0);
        // 3 is now reached through 1 and 2 (3 hops, no drained tunnel).
        assert_eq!(v.links[&("re6stnet4".to_owned(), prefix(3))], 0);
        assert_eq!(v.links[&("re6stnet1".to_owned(), prefix(1))], 3);
        assert_eq!(r.hops(3), Some(3));
        assert_eq!(v.routes_per_iface["re6stnet4"], 0);
        // Both ends see it drained.
        let v3 = r.view(&g, 3);
        assert_eq!(v3.links[&("re6stnet-udp".to_owned(), prefix(0))], 0);
        // Cut 1 - 2: the drained tunnel is the only way left to 0 and 1.
        let t12 = g.by_pair(1, 2).unwrap();
        g.unlink(t12);
        let v = r.view(&g, 0);
        assert_eq!(v.links[&("re6stnet4".to_owned(), prefix(3))], 2);
        assert_eq!(r.first_hop(2), Some(3));
        assert_eq!(r.hops(2), Some(2));
    }
}
