//! Whether a slot on trial has joined the overlay, without processes or
//! clocks: the caller asks the node (`re6st ctl status --json`) and, when
//! the node says it has no route to the registry's node, the registry over
//! HTTP; it reports each [`Observation`] with [`Monitor::handle`] and asks
//! [`Monitor::poll`] what to do at the current (monotonic) time.
//!
//! A slot is confirmed once, for [`Policy::stable`] without a bad
//! observation in between, the node has an established tunnel (a client
//! tunnel up, or a peer connected to one of its servers), babel routes to
//! other nodes, and a route to the registry's node, or, when the registry
//! does not answer, routes to any peer. If that does not happen within
//! [`Policy::deadline`] of init's start, init reboots and the initramfs,
//! which counted this boot as the trial's last, falls back to the previous
//! slot.

use std::time::{Duration, Instant};

use re6st_node::status::NodeStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub deadline: Duration,
    pub stable: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            deadline: Duration::from_secs(300),
            stable: Duration::from_secs(10),
        }
    }
}

/// The part of the node's status the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Overlay {
    /// Client tunnels in state `established`.
    pub established: usize,
    /// Peers connected to our OpenVPN servers.
    pub served: usize,
    /// Nodes babel has a route to.
    pub known_nodes: usize,
    /// The node believes it has no route to the registry's node.
    pub registry_cut: bool,
}

/// What the caller saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The node's status; `registry_answers` when the registry was asked
    /// over HTTP (only when the node is cut from its node).
    Node {
        overlay: Overlay,
        registry_answers: Option<bool>,
    },
    /// The node could not be asked (not running yet, no control socket,
    /// unreadable answer).
    NoAnswer(String),
}

/// Whether an observation shows the router in the overlay, and why not.
pub fn assess(obs: &Observation) -> Result<&'static str, String> {
    let (o, registry_answers) = match obs {
        Observation::NoAnswer(why) => return Err(format!("node not answering: {why}")),
        Observation::Node {
            overlay,
            registry_answers,
        } => (overlay, *registry_answers),
    };
    if o.established == 0 && o.served == 0 {
        return Err("no established tunnel".into());
    }
    if o.known_nodes == 0 {
        return Err("no babel route to any node".into());
    }
    if !o.registry_cut {
        return Ok("an established tunnel and a route to the registry's node");
    }
    match registry_answers {
        Some(false) => Ok("an established tunnel and routes to peers (the registry is down)"),
        Some(true) => {
            Err("no route to the registry's node, which its HTTP server still answers for".into())
        }
        None => Err("no route to the registry's node".into()),
    }
}

/// Reads the node's status (what its control socket sends, the JSON of
/// `re6st ctl status --json`), with the node's own type: the same code
/// `re6st ctl` runs, so the router binary carries it once.
pub fn parse_status(json: &str) -> Result<Overlay, String> {
    let s: NodeStatus = serde_json::from_str(json).map_err(|e| format!("node status: {e}"))?;
    Ok(Overlay {
        established: s
            .tunnels
            .iter()
            .filter(|t| t.state == "established")
            .count(),
        served: s.served.len(),
        known_nodes: s.known_nodes,
        registry_cut: s.registry_cut,
    })
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make the booted slot the active one.
    Confirm { why: &'static str },
    /// Reboot: the initramfs falls back to the previous slot.
    GiveUp { last: String },
}

#[derive(Debug)]
pub struct Monitor {
    policy: Policy,
    started: Instant,
    /// Since when every observation has been good.
    good_since: Option<(Instant, &'static str)>,
    last_problem: String,
    done: bool,
}

impl Monitor {
    pub fn new(policy: Policy, now: Instant) -> Monitor {
        Monitor {
            policy,
            started: now,
            good_since: None,
            last_problem: "nothing observed yet".into(),
            done: false,
        }
    }

    pub fn handle(&mut self, obs: &Observation, now: Instant) {
        match assess(obs) {
            Ok(why) => {
                if self.good_since.is_none() {
                    self.good_since = Some((now, why));
                }
            }
            Err(problem) => {
                self.good_since = None;
                self.last_problem = problem;
            }
        }
    }

    /// The action due at `now`, once.
    pub fn poll(&mut self, now: Instant) -> Option<Action> {
        if self.done {
            return None;
        }
        let action = match self.good_since {
            Some((since, why)) if now.saturating_duration_since(since) >= self.policy.stable => {
                Action::Confirm { why }
            }
            _ if now.saturating_duration_since(self.started) >= self.policy.deadline => {
                Action::GiveUp {
                    last: self.last_problem.clone(),
                }
            }
            _ => return None,
        };
        self.done = true;
        Some(action)
    }

    /// When `poll` may act without a new observation.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let limit = self.started + self.policy.deadline;
        Some(match self.good_since {
            Some((since, _)) => limit.min(since + self.policy.stable),
            None => limit,
        })
    }

    /// One line for `re6st init status`.
    pub fn describe(&self, now: Instant) -> String {
        let left = (self.started + self.policy.deadline).saturating_duration_since(now);
        match self.good_since {
            Some((since, why)) => format!(
                "in the overlay for {}s ({why}); confirmed after {}s",
                now.saturating_duration_since(since).as_secs(),
                self.policy.stable.as_secs()
            ),
            None => format!(
                "not in the overlay yet ({}); falls back in {}s",
                self.last_problem,
                left.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(established: usize, known_nodes: usize, registry_cut: bool) -> Observation {
        Observation::Node {
            overlay: Overlay {
                established,
                served: 0,
                known_nodes,
                registry_cut,
            },
            registry_answers: None,
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn the_overlay_means_a_tunnel_and_a_route_to_the_registrys_node() {
        assert!(assess(&node(1, 2, false)).is_ok());
        // A node running alone (what the old check took as healthy).
        assert_eq!(
            assess(&node(0, 0, false)),
            Err("no established tunnel".into())
        );
        assert!(assess(&node(1, 0, false)).is_err());
        let served = Observation::Node {
            overlay: Overlay {
                served: 1,
                known_nodes: 1,
                ..Overlay::default()
            },
            registry_answers: None,
        };
        assert!(assess(&served).is_ok());
        // Cut from the registry's node: fine only if the registry is down.
        assert!(assess(&node(1, 3, true)).is_err());
        let with = |answers| Observation::Node {
            overlay: Overlay {
                established: 1,
                known_nodes: 3,
                registry_cut: true,
                served: 0,
            },
            registry_answers: Some(answers),
        };
        assert!(assess(&with(false)).unwrap().contains("registry is down"));
        assert!(assess(&with(true)).is_err());
        assert!(assess(&Observation::NoAnswer("no socket".into())).is_err());
    }

    #[test]
    fn confirmed_after_a_stable_stretch_in_the_overlay() {
        let t0 = Instant::now();
        let mut m = Monitor::new(Policy::default(), t0);
        m.handle(&Observation::NoAnswer("starting".into()), secs(t0, 5));
        assert_eq!(m.poll(secs(t0, 5)), None);
        m.handle(&node(1, 1, false), secs(t0, 20));
        assert_eq!(m.poll(secs(t0, 25)), None);
        // A bad observation restarts the stretch.
        m.handle(&node(0, 0, false), secs(t0, 25));
        m.handle(&node(1, 1, false), secs(t0, 30));
        assert_eq!(m.next_deadline(), Some(secs(t0, 40)));
        assert_eq!(m.poll(secs(t0, 39)), None);
        assert!(matches!(m.poll(secs(t0, 40)), Some(Action::Confirm { .. })));
        assert_eq!(m.poll(secs(t0, 41)), None, "once");
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn a_node_that_runs_but_never_joins_falls_back_at_the_deadline() {
        let t0 = Instant::now();
        let policy = Policy {
            deadline: Duration::from_secs(120),
            stable: Duration::from_secs(10),
        };
        let mut m = Monitor::new(policy, t0);
        for s in (0..120).step_by(5) {
            m.handle(&node(0, 0, false), secs(t0, s));
            assert_eq!(m.poll(secs(t0, s)), None);
        }
        assert!(m.describe(secs(t0, 100)).contains("falls back in 20s"));
        assert_eq!(m.next_deadline(), Some(secs(t0, 120)));
        assert_eq!(
            m.poll(secs(t0, 120)),
            Some(Action::GiveUp {
                last: "no established tunnel".into()
            })
        );
        // Good too late, or good but not for long enough: still the deadline.
        let mut m = Monitor::new(policy, t0);
        m.handle(&node(1, 1, false), secs(t0, 115));
        assert!(matches!(m.poll(secs(t0, 120)), Some(Action::GiveUp { .. })));
    }

    #[test]
    fn the_nodes_json_status_is_read() {
        let tunnel = |iface: &str, state: &str| {
            format!(
                r#"{{"peer":"2001:db8:42:1::/64","iface":"{iface}","state":"{state}",
                "address":null,"protocol":null,"routes":1}}"#
            )
        };
        let json = format!(
            r#"{{"network":"2001:db8:42::/48","subnet":"2001:db8:42:2::/64",
            "address":"2001:db8:42:2::1","config_version":1,"cert_not_after":0,
            "registry_cut":false,"cached_peers":3,"known_nodes":2,
            "tunnels":[{},{}],"served":["2001:db8:42:3::/64"],"reachable_at":"",
            "ipv4":"fixed","port_mappings":[],"ipv4_payload":null,"country":null,
            "same_country":[]}}"#,
            tunnel("re6stnet0", "established"),
            tunnel("re6stnet1", "connecting")
        );
        assert_eq!(
            parse_status(&json),
            Ok(Overlay {
                established: 1,
                served: 1,
                known_nodes: 2,
                registry_cut: false
            })
        );
        assert!(parse_status("{}").is_err());
        assert!(parse_status("node not running").is_err());
    }
}
