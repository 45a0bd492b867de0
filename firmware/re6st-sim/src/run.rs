//! One experiment: warm-up, steady-state measurements, the loss, recovery
//! tracking, final measurements.

use std::time::Instant;

use crate::config::{LossKind, SimConfig};
use crate::ids::REGISTRY;
use crate::metrics::{self, Dist};
use crate::model::{Counts, Sim};
use crate::report::{LossReport, Paths, Point, Rates, Report, Rewiring, Snapshot};
use crate::rng::Rng;
use crate::wire::PeerTraffic;

/// Sources of the sampled path measurements (reference graph, latency).
const SAMPLED_SOURCES: usize = 200;
/// Random trials of each static random loss.
const STATIC_TRIALS: usize = 3;

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Progress lines on stderr.
    pub progress: bool,
    /// Put the wall time in the report.
    pub timing: bool,
    /// Skip the path measurements (diameter, stretch): they cost
    /// O(N·(N+E)) and tests do not need them.
    pub no_paths: bool,
}

struct Mark {
    t: i64,
    traffic: PeerTraffic,
    counts: Counts,
    node_seconds: f64,
}

fn paths(sim: &mut Sim, rng: &mut Rng) -> Option<Paths> {
    let n = sim.config().nodes;
    let members: Vec<u32> = {
        let comp = sim.components();
        let biggest =
            (0..comp.sizes.len()).max_by_key(|&c| (comp.sizes[c], std::cmp::Reverse(c)))?;
        (0..n)
            .filter(|&i| comp.label[i as usize] == biggest as u32)
            .collect()
    };
    if members.len() < 2 {
        return None;
    }
    let g = sim.graph();
    let overlay = metrics::hops(n as usize, &members, |u| g.adj(u).iter().map(|l| l.peer));
    let mean_degree =
        members.iter().map(|&i| g.degree(i) as f64).sum::<f64>() / members.len() as f64;
    let k = members.len() as u32;
    let reference_degree = (mean_degree.round() as u32).clamp(2, k - 1);
    let reference = metrics::random_regular(k, reference_degree, rng);
    let mut sources: Vec<u32> = (0..k).collect();
    rng.shuffle(&mut sources);
    sources.truncate(SAMPLED_SOURCES);
    let reference = metrics::hops(k as usize, &sources, |u| {
        reference[u as usize].iter().copied()
    });
    let pos = metrics::positions(n, sim.config().seed);
    let mut lat_sources = members.clone();
    rng.shuffle(&mut lat_sources);
    lat_sources.truncate(SAMPLED_SOURCES / 4);
    let latency_stretch = metrics::latency_stretch(g, &lat_sources, &pos);
    Some(Paths {
        hop_stretch: if reference.mean > 0.0 {
            overlay.mean / reference.mean
        } else {
            0.0
        },
        overlay,
        reference_degree,
        reference,
        latency_stretch,
    })
}

fn snapshot(sim: &mut Sim, rng: &mut Rng, with_paths: bool, with_static: bool) -> Snapshot {
    let n = sim.config().nodes;
    let alive: Vec<u32> = (0..n).filter(|&i| sim.alive()[i as usize]).collect();
    let g = sim.graph();
    let degree = |i: &u32| g.degree(*i) as f64;
    let tunnels_per_node = Dist::of(alive.iter().map(degree));
    let public = Dist::of(alive.iter().filter(|&&i| !sim.is_nat(i)).map(degree)).mean;
    let nat = Dist::of(alive.iter().filter(|&&i| sim.is_nat(i)).map(degree)).mean;
    let client_tunnels = Dist::of(
        alive
            .iter()
            .filter_map(|&i| sim.client_tunnels(i))
            .map(|c| c as f64),
    );
    let peer_sessions = Dist::of(
        alive
            .iter()
            .filter_map(|&i| sim.peer_sessions(i))
            .map(|c| c as f64),
    );
    let tunnels = g.links();
    let registry_cut = sim.registry_cut();
    let mut static_loss = Vec::new();
    if with_static {
        let registry = sim.alive()[REGISTRY as usize].then_some(REGISTRY);
        for kind in [LossKind::Random, LossKind::Targeted] {
            for fraction in [0.1, 0.3, 0.5] {
                static_loss.push(metrics::static_loss(
                    sim.graph(),
                    sim.alive(),
                    kind,
                    fraction,
                    registry,
                    STATIC_TRIALS,
                    rng,
                ));
            }
        }
    }
    let paths = if with_paths { paths(sim, rng) } else { None };
    let count = alive.len().max(1) as f64;
    let t = sim.now();
    let comp = sim.components();
    Snapshot {
        t,
        alive: alive.len(),
        tunnels,
        tunnels_per_node,
        tunnels_per_public_node: public,
        tunnels_per_nat_node: nat,
        client_tunnels,
        peer_sessions,
        components: comp.sizes.len(),
        largest_fraction: f64::from(comp.largest()) / count,
        reachable_pairs: comp.reachable_pairs() as f64 / (count * (count - 1.0)).max(1.0),
        registry_cut,
        paths,
        static_loss,
    }
}

fn rates(a: &Mark, b: &Mark) -> Rates {
    let traffic = b.traffic.minus(&a.traffic);
    let counts = b.counts.minus(&a.counts);
    let per_min = |x: u64| x as f64 * 60.0 / (b.node_seconds - a.node_seconds).max(1.0);
    Rates {
        from: a.t,
        to: b.t,
        peer_messages: per_min(traffic.messages() - traffic.version_announcements),
        version_announcements: per_min(traffic.version_announcements),
        babel_dumps: per_min(counts.dumps),
        babel_dumps_underconnected: (counts.underconnected_seconds > 0).then(|| {
            counts.underconnected_dumps as f64 * 60.0 / counts.underconnected_seconds as f64
        }),
        babel_dumps_underconnected_quiet: (counts.quiet_underconnected_seconds > 0).then(|| {
            counts.quiet_underconnected_dumps as f64 * 60.0
                / counts.quiet_underconnected_seconds as f64
        }),
        bootstrap_requests: per_min(counts.bootstrap_requests),
        tunnel_attempts: per_min(counts.tunnel_attempts),
        tunnel_closes: per_min(counts.tunnel_closes),
        peer_bytes_per_s: per_min(traffic.bytes) / 60.0,
        traffic,
        counts,
    }
}

pub fn run(cfg: SimConfig, opt: Options) -> Report {
    let started = Instant::now();
    let mut rng = Rng::derive(cfg.seed, 3);
    let mut sim = Sim::new(cfg.clone());
    let loss_at = cfg.loss_at;
    let steady_from = (loss_at / 2).max(cfg.join_over).min(loss_at - 1);
    let rewire_from = loss_at - cfg.tunnel_refresh;
    let mut node_seconds = 0.0;
    let mark = |sim: &Sim, node_seconds: f64| Mark {
        t: sim.now(),
        traffic: sim.traffic(),
        counts: sim.counts(),
        node_seconds,
    };
    let mut steady_mark = None;
    let mut loss_mark = None;
    let mut edges_before = None;
    let mut steady = None;
    let mut rewiring = None;
    let mut loss: Option<LossReport> = None;
    let mut series = Vec::new();
    let mut next_progress = 0;
    while sim.now() < cfg.duration {
        let t = sim.now();
        if t == steady_from {
            steady_mark = Some(mark(&sim, node_seconds));
        }
        if t == rewire_from {
            edges_before = Some(sim.graph().edge_set());
        }
        if t == loss_at {
            steady = Some(snapshot(&mut sim, &mut rng, !opt.no_paths, true));
            if let Some(before) = edges_before.take() {
                let after = sim.graph().edge_set();
                let kept = before
                    .iter()
                    .filter(|e| after.binary_search(e).is_ok())
                    .count();
                rewiring = Some(Rewiring {
                    window_s: cfg.tunnel_refresh,
                    edges_before: before.len(),
                    edges_after: after.len(),
                    kept_fraction: kept as f64 / before.len().max(1) as f64,
                });
            }
            loss_mark = Some(mark(&sim, node_seconds));
            if cfg.loss.is_some() || cfg.registry_down {
                let mut victims = cfg.loss.map(|l| sim.choose_victims(l)).unwrap_or_default();
                if cfg.registry_down {
                    victims.push(REGISTRY);
                }
                sim.kill(&victims);
                let survivors = sim.alive_count();
                let comp = sim.components();
                let count = survivors.max(1) as f64;
                loss = Some(LossReport {
                    spec: cfg.loss.map(|l| l.to_string()),
                    registry_down: cfg.registry_down,
                    at: loss_at,
                    killed: victims.len(),
                    survivors,
                    components_after: comp.sizes.len(),
                    largest_fraction_after: f64::from(comp.largest()) / count,
                    reachable_pairs_after: comp.reachable_pairs() as f64
                        / (count * (count - 1.0)).max(1.0),
                    reconnected_after_s: None,
                    largest_99_after_s: None,
                    last_split_s: None,
                    one_component_at_end: false,
                    stranded_at_end: 0,
                    stranded_nat_at_end: 0,
                });
            }
        }
        if let Some(l) = loss.as_mut() {
            // Measured at the start of each second after the loss.
            let survivors = sim.alive_count() as f64;
            let comp = sim.components();
            let since = t - loss_at;
            if comp.sizes.len() <= 1 {
                l.reconnected_after_s.get_or_insert(since);
            } else {
                l.last_split_s = Some(since);
            }
            if f64::from(comp.largest()) >= 0.99 * survivors {
                l.largest_99_after_s.get_or_insert(since);
            }
        }
        if t % cfg.sample_every == 0 {
            let alive = sim.alive_count();
            let registry_cut = sim.registry_cut();
            let tunnels = sim.graph().links();
            let comp = sim.components();
            series.push(Point {
                t,
                alive,
                tunnels,
                components: comp.sizes.len(),
                largest_fraction: f64::from(comp.largest()) / alive.max(1) as f64,
                registry_cut,
            });
        }
        if opt.progress && t >= next_progress {
            eprintln!(
                "re6st-sim: t = {t} s of {}, {} alive, {} tunnels, wall {:.1} s",
                cfg.duration,
                sim.alive_count(),
                sim.graph().links(),
                started.elapsed().as_secs_f64()
            );
            next_progress = t + (cfg.duration / 20).max(1);
        }
        node_seconds += sim.alive_count() as f64;
        sim.step();
    }
    let end_mark = mark(&sim, node_seconds);
    if let Some(l) = loss.as_mut() {
        let comp = sim.components().clone();
        l.one_component_at_end = comp.sizes.len() <= 1;
        if let Some(big) =
            (0..comp.sizes.len()).max_by_key(|&c| (comp.sizes[c], std::cmp::Reverse(c)))
        {
            let stranded: Vec<u32> = (0..cfg.nodes)
                .filter(|&i| {
                    let c = comp.label[i as usize];
                    c != u32::MAX && c as usize != big
                })
                .collect();
            l.stranded_at_end = stranded.len();
            l.stranded_nat_at_end = stranded.iter().filter(|&&i| sim.is_nat(i)).count();
        }
    }
    let end = snapshot(&mut sim, &mut rng, !opt.no_paths, false);
    let steady = steady.unwrap_or_else(|| end.clone());
    let control_steady = match (&steady_mark, &loss_mark) {
        (Some(a), Some(b)) => rates(a, b),
        _ => rates(
            &Mark {
                t: 0,
                traffic: PeerTraffic::default(),
                counts: Counts::default(),
                node_seconds: 0.0,
            },
            &end_mark,
        ),
    };
    let control_after_loss = match (&loss_mark, loss.is_some()) {
        (Some(a), true) => Some(rates(a, &end_mark)),
        _ => None,
    };
    Report {
        params: cfg,
        steady,
        rewiring,
        loss,
        end,
        control_steady,
        control_after_loss,
        series,
        wall_seconds: opt.timing.then(|| started.elapsed().as_secs_f64()),
    }
}
