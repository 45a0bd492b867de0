//! Parameters of one simulation run.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Nodes drawn uniformly at random.
    Random,
    /// The nodes with the most tunnels first.
    Targeted,
}

/// Nodes killed at once, as a fraction of the nodes alive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Loss {
    pub kind: LossKind,
    pub fraction: f64,
}

impl FromStr for Loss {
    type Err = String;
    /// `random:0.3` or `targeted:0.3`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, f) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected random:FRACTION or targeted:FRACTION"))?;
        let kind = match kind {
            "random" => LossKind::Random,
            "targeted" => LossKind::Targeted,
            k => return Err(format!("unknown loss kind {k:?} (random or targeted)")),
        };
        let fraction: f64 = f.parse().map_err(|_| format!("bad fraction {f:?}"))?;
        if !(0.0..1.0).contains(&fraction) {
            return Err(format!("fraction {fraction} not in [0, 1)"));
        }
        Ok(Loss { kind, fraction })
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            LossKind::Random => "random",
            LossKind::Targeted => "targeted",
        };
        write!(f, "{k}:{}", self.fraction)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    pub nodes: u32,
    /// Client tunnels a node wants (network configuration `client_count`).
    pub client_count: usize,
    /// Clients each OpenVPN server accepts (one server on UDP, one on TCP).
    pub max_clients: usize,
    /// Seconds between two refreshes of a node's tunnels.
    pub tunnel_refresh: i64,
    /// Babel hello interval; OpenVPN's ping-exit and the manager's timeout
    /// are 4 hellos, as in the node.
    pub hello: i64,
    /// Simulated seconds.
    pub duration: i64,
    pub seed: u64,
    /// Fraction of nodes behind a NAT: their servers are unreachable.
    pub nat: f64,
    /// NATed nodes announce an address anyway (the daemon's fallback
    /// without UPnP: the address peers see them from), which peers try
    /// in vain; otherwise they announce none.
    pub nat_announces: bool,
    /// Nodes boot at random times in `[0, join_over)` (the registry's own
    /// node at 0).
    pub join_over: i64,
    /// Seconds from OpenVPN's start to a tunnel carrying routes.
    pub tunnel_delay: i64,
    /// Seconds between two calls of a node's `tick` (the daemon: 1); the
    /// manager's own `next_timeout` is always honoured.
    pub tick: i64,
    pub loss: Option<Loss>,
    /// The registry's node dies with the loss: no more bootstrap answers.
    pub registry_down: bool,
    /// When the loss happens (and the steady state is measured).
    pub loss_at: i64,
    /// Seconds between two points of the time series.
    pub sample_every: i64,
}

impl SimConfig {
    /// A run of `nodes` nodes with upstream's network defaults.
    pub fn new(nodes: u32) -> SimConfig {
        SimConfig {
            nodes,
            client_count: 10,
            max_clients: 20,
            tunnel_refresh: 300,
            hello: 15,
            duration: 3600,
            seed: 1,
            nat: 0.2,
            nat_announces: false,
            join_over: 600,
            tunnel_delay: 5,
            tick: 1,
            loss: None,
            registry_down: false,
            loss_at: 1800,
            sample_every: 60,
        }
    }

    /// The manager's timeout (4 hellos).
    pub fn timeout(&self) -> i64 {
        4 * self.hello
    }

    pub fn check(&self) -> Result<(), String> {
        if self.nodes < 2 || self.nodes > crate::ids::MAX_NODES {
            return Err(format!("--nodes must be in 2..={}", crate::ids::MAX_NODES));
        }
        if self.client_count == 0 || self.max_clients == 0 {
            return Err("--client-count and --max-clients must be positive".into());
        }
        if !(0.0..1.0).contains(&self.nat) {
            return Err("--nat must be in [0, 1)".into());
        }
        if self.tick < 1 || self.tunnel_refresh < 1 || self.hello < 1 || self.sample_every < 1 {
            return Err("--tick, --tunnel-refresh, --hello and --sample-every must be >= 1".into());
        }
        if self.tunnel_delay < 0 || self.join_over < 0 || self.duration < 1 {
            return Err("negative delay or empty duration".into());
        }
        if self.loss_at < 1 || self.loss_at > self.duration {
            return Err("--loss-at must be within the duration".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_specs() {
        let l: Loss = "targeted:0.3".parse().unwrap();
        assert_eq!((l.kind, l.fraction), (LossKind::Targeted, 0.3));
        assert_eq!(l.to_string(), "targeted:0.3");
        for bad in ["random", "random:1.5", "nasty:0.1", "random:x"] {
            assert!(bad.parse::<Loss>().is_err(), "{bad}");
        }
        assert!(SimConfig::new(1000).check().is_ok());
        assert!(SimConfig::new(1).check().is_err());
    }
}
