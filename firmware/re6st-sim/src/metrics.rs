//! Graph measurements: distribution summaries, path lengths and diameter,
//! the reference random regular graph, latency stretch over an underlay
//! model, and connectivity after removing nodes.

use serde::Serialize;

use crate::config::LossKind;
use crate::graph::{Components, Graph};
use crate::rng::Rng;

/// Mean, smallest and largest of some per-node quantity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Dist {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Dist {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Dist {
        let (mut n, mut sum, mut min, mut max) = (0usize, 0.0, f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            n += 1;
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        if n == 0 {
            return Dist::default();
        }
        Dist {
            mean: sum / n as f64,
            min,
            max,
        }
    }
}

/// Breadth-first search with buffers kept between calls.
#[derive(Debug, Default)]
pub struct Bfs {
    dist: Vec<u32>,
    stamp: Vec<u32>,
    epoch: u32,
    queue: Vec<u32>,
    /// Underlay latency along the search tree (ms), when asked for.
    pub latency: Vec<f64>,
}

/// What one search found: farthest hop count, sum of hop counts, nodes
/// reached (the source excluded).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reach {
    pub eccentricity: u32,
    pub sum: u64,
    pub reached: u64,
}

impl Bfs {
    pub fn run<I: Iterator<Item = u32>>(
        &mut self,
        n: usize,
        src: u32,
        adj: impl Fn(u32) -> I,
        mut on_edge: impl FnMut(u32, u32, &mut Self),
    ) -> Reach {
        if self.stamp.len() != n {
            self.stamp = vec![0; n];
            self.dist = vec![0; n];
            self.latency = vec![0.0; n];
            self.epoch = 0;
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.stamp.fill(0);
            self.epoch = 1;
        }
        let mut r = Reach::default();
        self.queue.clear();
        self.queue.push(src);
        self.stamp[src as usize] = self.epoch;
        self.dist[src as usize] = 0;
        self.latency[src as usize] = 0.0;
        let mut head = 0;
        while let Some(&u) = self.queue.get(head) {
            head += 1;
            let d = self.dist[u as usize] + 1;
            for v in adj(u) {
                if self.stamp[v as usize] == self.epoch {
                    continue;
                }
                self.stamp[v as usize] = self.epoch;
                self.dist[v as usize] = d;
                on_edge(u, v, self);
                self.queue.push(v);
                r.eccentricity = d;
                r.sum += u64::from(d);
                r.reached += 1;
            }
        }
        r
    }

    pub fn reached(&self, v: u32) -> bool {
        self.stamp.get(v as usize) == Some(&self.epoch)
    }
}

/// Hop counts between nodes of one component, from the given sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Hops {
    /// Largest eccentricity among the sources: the diameter when every
    /// node of the component is a source, a lower bound otherwise.
    pub diameter: u32,
    pub mean: f64,
    pub sources: usize,
}

pub fn hops<I: Iterator<Item = u32>>(
    n: usize,
    sources: &[u32],
    adj: impl Fn(u32) -> I + Copy,
) -> Hops {
    let mut bfs = Bfs::default();
    let (mut diameter, mut sum, mut pairs) = (0, 0u64, 0u64);
    for &s in sources {
        let r = bfs.run(n, s, adj, |_, _, _| {});
        diameter = diameter.max(r.eccentricity);
        sum += r.sum;
        pairs += r.reached;
    }
    Hops {
        diameter,
        mean: if pairs == 0 {
            0.0
        } else {
            sum as f64 / pairs as f64
        },
        sources: sources.len(),
    }
}

/// A random `degree`-regular graph on `n` nodes (configuration model;
/// self-loops and repeated pairs are dropped, so a few nodes end up one
/// or two short): what an ideal random overlay with the same number of
/// tunnels would look like.
pub fn random_regular(n: u32, degree: u32, rng: &mut Rng) -> Vec<Vec<u32>> {
    let mut stubs: Vec<u32> = (0..n)
        .flat_map(|i| std::iter::repeat_n(i, degree as usize))
        .collect();
    rng.shuffle(&mut stubs);
    let mut adj = vec![Vec::with_capacity(degree as usize); n as usize];
    for pair in stubs.chunks_exact(2) {
        let (a, b) = (pair[0], pair[1]);
        if a != b && !adj[a as usize].contains(&b) {
            adj[a as usize].push(b);
            adj[b as usize].push(a);
        }
    }
    adj
}

/// Stretch of overlay paths over an underlay model: nodes sit uniformly in
/// a square; a direct underlay path between two nodes costs `ACCESS_MS`
/// plus `SPAN_MS` times their distance (side of the square = 1). The
/// overlay path is the hop-shortest path babel would use (latency is not
/// a metric in our routing model), each tunnel costing the underlay path
/// between its ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyStretch {
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
    /// Mean one-way latency of the overlay paths measured (ms).
    pub overlay_ms: f64,
    /// Mean one-way latency of the direct underlay paths (ms).
    pub direct_ms: f64,
    pub pairs: u64,
}

pub const ACCESS_MS: f64 = 5.0;
pub const SPAN_MS: f64 = 100.0;

/// Node positions for the underlay model.
pub fn positions(n: u32, seed: u64) -> Vec<(f64, f64)> {
    let mut r = Rng::derive(seed, 2);
    (0..n).map(|_| (r.unit(), r.unit())).collect()
}

fn underlay_ms(p: &[(f64, f64)], a: u32, b: u32) -> f64 {
    let (pa, pb) = (p[a as usize], p[b as usize]);
    ACCESS_MS + SPAN_MS * ((pa.0 - pb.0).powi(2) + (pa.1 - pb.1).powi(2)).sqrt()
}

pub fn latency_stretch(g: &Graph, sources: &[u32], pos: &[(f64, f64)]) -> LatencyStretch {
    let n = g.nodes() as usize;
    let mut bfs = Bfs::default();
    let mut ratios = Vec::new();
    let (mut overlay, mut direct) = (0.0, 0.0);
    for &s in sources {
        bfs.run(
            n,
            s,
            |u| g.adj(u).iter().map(|l| l.peer),
            |u, v, b| b.latency[v as usize] = b.latency[u as usize] + underlay_ms(pos, u, v),
        );
        for v in 0..n as u32 {
            if v != s && bfs.reached(v) {
                let (o, d) = (bfs.latency[v as usize], underlay_ms(pos, s, v));
                overlay += o;
                direct += d;
                ratios.push(o / d);
            }
        }
    }
    if ratios.is_empty() {
        return LatencyStretch::default();
    }
    ratios.sort_by(f64::total_cmp);
    let k = ratios.len();
    LatencyStretch {
        mean: ratios.iter().sum::<f64>() / k as f64,
        median: ratios[k / 2],
        p90: ratios[(k * 9 / 10).min(k - 1)],
        overlay_ms: overlay / k as f64,
        direct_ms: direct / k as f64,
        pairs: k as u64,
    }
}

/// Connectivity of the survivors if some nodes were removed from a
/// snapshot at once (no repair).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StaticLoss {
    pub kind: LossKind,
    pub fraction: f64,
    /// Largest component over the survivors (mean over the trials).
    pub largest_fraction: f64,
    /// Worst trial.
    pub largest_fraction_min: f64,
    /// Ordered pairs of survivors that can still reach each other.
    pub reachable_pairs: f64,
    pub trials: usize,
}

/// Removes `fraction` of the live nodes, drawn among those other than
/// `also_removed` (the registry's node, down), which goes too, and measures
/// the rest.
pub fn static_loss(
    g: &Graph,
    alive: &[bool],
    kind: LossKind,
    fraction: f64,
    also_removed: Option<u32>,
    trials: usize,
    rng: &mut Rng,
) -> StaticLoss {
    let candidates: Vec<u32> = (0..g.nodes())
        .filter(|&i| alive[i as usize] && Some(i) != also_removed)
        .collect();
    let k = (fraction * alive.iter().filter(|&&a| a).count() as f64).round() as usize;
    let trials = if kind == LossKind::Targeted {
        1
    } else {
        trials
    };
    let (mut largest, mut worst, mut pairs) = (0.0, f64::INFINITY, 0.0);
    let mut comp = Components::default();
    for _ in 0..trials {
        let mut order = candidates.clone();
        match kind {
            LossKind::Random => rng.shuffle(&mut order),
            // Ties in degree broken at random.
            LossKind::Targeted => {
                let mut keyed: Vec<(std::cmp::Reverse<usize>, u64, u32)> = order
                    .iter()
                    .map(|&i| (std::cmp::Reverse(g.degree(i)), rng.next_u64(), i))
                    .collect();
                keyed.sort_unstable();
                order = keyed.into_iter().map(|(_, _, i)| i).collect();
            }
        }
        let mut left = alive.to_vec();
        for &v in order.iter().take(k).chain(also_removed.as_ref()) {
            left[v as usize] = false;
        }
        let survivors = left.iter().filter(|&&a| a).count().max(1) as f64;
        comp.compute(g, &left);
        let l = f64::from(comp.largest()) / survivors;
        largest += l;
        worst = f64::min(worst, l);
        pairs += comp.reachable_pairs() as f64 / (survivors * (survivors - 1.0)).max(1.0);
    }
    StaticLoss {
        kind,
        fraction,
        largest_fraction: largest / trials as f64,
        largest_fraction_min: worst,
        reachable_pairs: pairs / trials as f64,
        trials,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: u32) -> Graph {
        let mut g = Graph::new(n);
        for i in 0..n {
            let t = g.attempt(i, (i + 1) % n, "re6stnet1", 0, u64::from(i));
            g.link(t);
        }
        g
    }

    #[test]
    fn ring_paths_and_loss() {
        let g = ring(10);
        let all: Vec<u32> = (0..10).collect();
        let h = hops(10, &all, |u| g.adj(u).iter().map(|l| l.peer));
        assert_eq!(h.diameter, 5);
        // Distances 1,1,2,2,3,3,4,4,5 from every node.
        assert!((h.mean - 25.0 / 9.0).abs() < 1e-9);
        let alive = vec![true; 10];
        let mut rng = Rng::new(1);
        // Removing two nodes of a ring (plus none) cuts it in at most two.
        let s = static_loss(&g, &alive, LossKind::Random, 0.2, None, 5, &mut rng);
        assert!(s.largest_fraction <= 1.0 && s.largest_fraction >= 0.5);
        // Removing node 0 only: still one path.
        let s = static_loss(&g, &alive, LossKind::Targeted, 0.0, Some(0), 1, &mut rng);
        assert_eq!(s.largest_fraction, 1.0);
        assert_eq!(s.reachable_pairs, 1.0);
    }

    #[test]
    fn random_regular_is_nearly_regular() {
        let adj = random_regular(1000, 8, &mut Rng::new(3));
        let degrees = Dist::of(adj.iter().map(|a| a.len() as f64));
        assert!(degrees.max <= 8.0 && degrees.mean > 7.9, "{degrees:?}");
        let h = hops(1000, &[0, 1, 2], |u| adj[u as usize].iter().copied());
        // ln(1000)/ln(7) ~ 3.5
        assert!(h.mean > 3.0 && h.mean < 4.0, "{h:?}");
    }

    #[test]
    fn stretch_is_at_least_one_and_exact_on_a_line() {
        let mut g = Graph::new(3);
        for (a, b) in [(0, 1), (1, 2)] {
            let t = g.attempt(a, b, "re6stnet1", 0, 0);
            g.link(t);
        }
        // 0, 1 and 2 on a line: the path through 1 costs one extra access.
        let pos = [(0.0, 0.0), (0.5, 0.0), (1.0, 0.0)];
        let s = latency_stretch(&g, &[0], &pos);
        assert_eq!(s.pairs, 2);
        let via = (2.0 * (ACCESS_MS + 50.0)) / (ACCESS_MS + 100.0);
        assert!((s.mean - (1.0 + via) / 2.0).abs() < 1e-9, "{s:?}");
    }
}
