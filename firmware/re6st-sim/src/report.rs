//! What a run measured: the JSON report and its human summary.

use std::fmt::Write;

use serde::Serialize;

use crate::config::SimConfig;
use crate::metrics::{Dist, Hops, LatencyStretch, StaticLoss};
use crate::model::Counts;
use crate::wire::PeerTraffic;

/// Path lengths of the largest component, against an ideal random graph.
#[derive(Debug, Clone, Serialize)]
pub struct Paths {
    /// Exact (every node of the largest component is a source).
    pub overlay: Hops,
    /// Degree of the reference random regular graph: the overlay's mean
    /// tunnels per node, rounded.
    pub reference_degree: u32,
    /// The reference graph, same node count (sampled sources).
    pub reference: Hops,
    /// Mean overlay hops over mean reference hops.
    pub hop_stretch: f64,
    pub latency_stretch: LatencyStretch,
}

/// The overlay at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub t: i64,
    pub alive: usize,
    pub tunnels: usize,
    /// Tunnels per node, client and served (the node's degree).
    pub tunnels_per_node: Dist,
    pub tunnels_per_public_node: f64,
    pub tunnels_per_nat_node: f64,
    /// Client tunnels per node, as their managers count them.
    pub client_tunnels: Dist,
    /// Peer-protocol sessions per node (its core's table, established or
    /// not): what a node's memory for the peer protocol grows with.
    pub peer_sessions: Dist,
    pub components: usize,
    pub largest_fraction: f64,
    pub reachable_pairs: f64,
    /// Nodes whose manager believes it cannot reach the registry.
    pub registry_cut: usize,
    pub paths: Option<Paths>,
    /// What removing nodes from this snapshot at once would do, the
    /// registry's node removed too (no repair: see `loss` for that).
    pub static_loss: Vec<StaticLoss>,
}

/// How much the overlay changed over one refresh period before the loss.
#[derive(Debug, Clone, Serialize)]
pub struct Rewiring {
    pub window_s: i64,
    pub edges_before: usize,
    pub edges_after: usize,
    /// Node pairs with a tunnel at both ends of the window, over the
    /// pairs at its start.
    pub kept_fraction: f64,
}

/// Control traffic per live node per minute over a window.
#[derive(Debug, Clone, Serialize)]
pub struct Rates {
    pub from: i64,
    pub to: i64,
    /// Manager peer messages: address queries and answers, kill requests
    /// and answers.
    pub peer_messages: f64,
    pub version_announcements: f64,
    pub babel_dumps: f64,
    /// Babel dumps per minute of a node below its client count (`None`:
    /// no node was).
    pub babel_dumps_underconnected: Option<f64>,
    /// The same while nothing changes for the node (no event for a
    /// minute, no drain): issue 16's target.
    pub babel_dumps_underconnected_quiet: Option<f64>,
    pub bootstrap_requests: f64,
    pub tunnel_attempts: f64,
    pub tunnel_closes: f64,
    /// Peer protocol bytes per node per second (framing included).
    pub peer_bytes_per_s: f64,
    pub traffic: PeerTraffic,
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct LossReport {
    pub spec: Option<String>,
    pub registry_down: bool,
    pub at: i64,
    pub killed: usize,
    pub survivors: usize,
    /// Right after the loss, before any repair.
    pub components_after: usize,
    pub largest_fraction_after: f64,
    pub reachable_pairs_after: f64,
    /// Seconds until the survivors were one component again (`None`:
    /// never within the run).
    pub reconnected_after_s: Option<i64>,
    /// Seconds until the largest component held 99 % of the survivors.
    pub largest_99_after_s: Option<i64>,
    /// Last second at which the survivors were split, relative to the loss.
    pub last_split_s: Option<i64>,
    pub one_component_at_end: bool,
    /// Survivors outside the largest component at the end, and how many
    /// of them are NATed.
    pub stranded_at_end: usize,
    pub stranded_nat_at_end: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub t: i64,
    pub alive: usize,
    pub tunnels: usize,
    pub components: usize,
    pub largest_fraction: f64,
    pub registry_cut: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub params: SimConfig,
    pub steady: Snapshot,
    pub rewiring: Option<Rewiring>,
    pub loss: Option<LossReport>,
    pub end: Snapshot,
    pub control_steady: Rates,
    pub control_after_loss: Option<Rates>,
    pub series: Vec<Point>,
    /// Wall-clock seconds of the run (only with `--timing`: a report must
    /// otherwise be the same for the same seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
}

fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

fn opt_s(x: Option<i64>) -> String {
    x.map_or_else(|| "never".to_owned(), |s| format!("{s} s"))
}

impl Report {
    pub fn summary(&self) -> String {
        let p = &self.params;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "re6st-sim: {} nodes ({} NATed{}), client_count {}, tunnel_refresh {} s, {} s simulated, seed {}",
            p.nodes,
            pct(p.nat),
            if p.nat_announces { ", announcing an address" } else { "" },
            p.client_count,
            p.tunnel_refresh,
            p.duration,
            p.seed
        );
        for (name, s) in [("steady state", &self.steady), ("end", &self.end)] {
            let _ = writeln!(
                o,
                "{name} (t = {} s): {} nodes alive, {} tunnels",
                s.t, s.alive, s.tunnels
            );
            let _ = writeln!(
                o,
                "  tunnels per node: mean {:.2}, max {} (public {:.2}, NATed {:.2}); client tunnels: mean {:.2}, min {}, max {}",
                s.tunnels_per_node.mean,
                s.tunnels_per_node.max,
                s.tunnels_per_public_node,
                s.tunnels_per_nat_node,
                s.client_tunnels.mean,
                s.client_tunnels.min,
                s.client_tunnels.max
            );
            let _ = writeln!(
                o,
                "  peer sessions per node: mean {:.1}, max {}",
                s.peer_sessions.mean, s.peer_sessions.max
            );
            let _ = writeln!(
                o,
                "  components {}, largest {}, reachable pairs {}, registry cut for {} nodes",
                s.components,
                pct(s.largest_fraction),
                pct(s.reachable_pairs),
                s.registry_cut
            );
            if let Some(x) = &s.paths {
                let _ = writeln!(
                    o,
                    "  diameter {}, mean hops {:.3}; random {}-regular graph: mean hops {:.3} (diameter >= {}); hop stretch {:.3}",
                    x.overlay.diameter,
                    x.overlay.mean,
                    x.reference_degree,
                    x.reference.mean,
                    x.reference.diameter,
                    x.hop_stretch
                );
                let _ = writeln!(
                    o,
                    "  latency stretch over the underlay model: mean {:.2}, median {:.2}, p90 {:.2} ({:.0} ms vs {:.0} ms direct)",
                    x.latency_stretch.mean,
                    x.latency_stretch.median,
                    x.latency_stretch.p90,
                    x.latency_stretch.overlay_ms,
                    x.latency_stretch.direct_ms
                );
            }
            for l in &s.static_loss {
                let _ = writeln!(
                    o,
                    "  remove {:?} {:.0} % + registry at once: largest component {} (worst {}), reachable pairs {}",
                    l.kind,
                    100.0 * l.fraction,
                    pct(l.largest_fraction),
                    pct(l.largest_fraction_min),
                    pct(l.reachable_pairs)
                );
            }
        }
        if let Some(r) = &self.rewiring {
            let _ = writeln!(
                o,
                "rewiring: {} of the node pairs with a tunnel kept over {} s",
                pct(r.kept_fraction),
                r.window_s
            );
        }
        if let Some(l) = &self.loss {
            let _ = writeln!(
                o,
                "loss at {} s: {} (registry down: {}): {} killed, {} survivors; right after: {} components, largest {}, reachable pairs {}",
                l.at,
                l.spec.as_deref().unwrap_or("none"),
                l.registry_down,
                l.killed,
                l.survivors,
                l.components_after,
                pct(l.largest_fraction_after),
                pct(l.reachable_pairs_after)
            );
            let _ = writeln!(
                o,
                "  one component again after {}; largest >= 99 % after {}; last split at {}; one component at the end: {} ({} stranded, {} of them NATed)",
                opt_s(l.reconnected_after_s),
                opt_s(l.largest_99_after_s),
                l.last_split_s.map_or_else(|| "-".to_owned(), |s| format!("{s} s")),
                l.one_component_at_end,
                l.stranded_at_end,
                l.stranded_nat_at_end
            );
        }
        for (name, r) in [
            ("steady", Some(&self.control_steady)),
            ("after loss", self.control_after_loss.as_ref()),
        ] {
            if let Some(r) = r {
                let _ = writeln!(
                    o,
                    "control per node per minute ({name}, {}..{} s): {:.2} peer messages + {:.2} version announcements, {:.2} babel dumps ({} per under-connected node, {} while quiet), {:.3} bootstrap requests, {:.2} tunnel attempts; {:.1} B/s",
                    r.from,
                    r.to,
                    r.peer_messages,
                    r.version_announcements,
                    r.babel_dumps,
                    r.babel_dumps_underconnected
                        .map_or_else(|| "none".to_owned(), |x| format!("{x:.2}")),
                    r.babel_dumps_underconnected_quiet
                        .map_or_else(|| "none".to_owned(), |x| format!("{x:.2}")),
                    r.bootstrap_requests,
                    r.tunnel_attempts,
                    r.peer_bytes_per_s
                );
            }
        }
        if let Some(w) = self.wall_seconds {
            let _ = writeln!(o, "wall time: {w:.1} s");
        }
        o
    }
}
