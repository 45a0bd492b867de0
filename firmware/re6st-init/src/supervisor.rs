//! The service supervisor's decisions, without processes or clocks: the
//! caller spawns, signals and reaps, reports what happened, and asks
//! [`Supervisor::poll`] what to do next at the current (monotonic) time.
//!
//! - A service starts once everything it is `after` is there: milestones
//!   the caller announces (`network`, `clock`, `provisioned`...) and other
//!   services, running.
//! - A service that exits is restarted after an exponential back-off,
//!   capped; a run longer than the stable period forgets past failures.
//! - At shutdown, services stop in reverse dependency order: a service gets
//!   SIGTERM once nothing that depends on it runs any more, then SIGKILL if
//!   it outlives the stop timeout.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::backoff::Backoff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub backoff: Backoff,
    /// A run at least this long resets the failure count.
    pub stable_after: Duration,
    /// Time between SIGTERM and SIGKILL at shutdown.
    pub stop_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            stable_after: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDef {
    pub name: String,
    /// Milestones or names of services to wait for.
    pub after: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DependencyError {
    #[error("service {0:?} is defined twice")]
    Duplicate(String),
    #[error("service {0:?} waits for {1:?}, which is neither a service nor a milestone")]
    Unknown(String, String),
    #[error("services {0:?} wait for each other")]
    Cycle(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Kill,
}

/// What the caller must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start service `index` and report with `spawned` or `spawn_failed`.
    Spawn(usize),
    /// Send `signal` to the process group of `pid` (service `index`).
    Signal {
        index: usize,
        pid: i32,
        signal: StopSignal,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    /// Spawn requested, outcome not reported yet.
    Starting,
    Running {
        pid: i32,
        since: Instant,
    },
    Backoff {
        until: Instant,
    },
    Stopping {
        pid: i32,
        /// `None` once SIGKILL was sent.
        kill_at: Option<Instant>,
    },
    Stopped,
}

#[derive(Debug)]
struct Service {
    def: ServiceDef,
    state: State,
    /// Consecutive short runs.
    failures: u32,
    /// Total restarts, for status.
    restarts: u64,
}

/// An exit, as the caller should log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    pub index: usize,
    pub name: String,
    /// `None` when it is not restarted (shutdown).
    pub restart_in: Option<Duration>,
}

/// A service as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    pub name: String,
    pub state: &'static str,
    pub pid: Option<i32>,
    pub restarts: u64,
}

#[derive(Debug)]
pub struct Supervisor {
    services: Vec<Service>,
    milestones: BTreeSet<String>,
    policy: Policy,
    shutting_down: bool,
}

impl Supervisor {
    /// Checks that every dependency names a service or one of `milestones`
    /// and that services do not wait for each other in a cycle.
    pub fn new(
        defs: Vec<ServiceDef>,
        milestones: &[&str],
        policy: Policy,
    ) -> Result<Self, DependencyError> {
        let mut names = BTreeSet::new();
        for d in &defs {
            if !names.insert(d.name.as_str()) {
                return Err(DependencyError::Duplicate(d.name.clone()));
            }
        }
        for d in &defs {
            for dep in &d.after {
                if !names.contains(dep.as_str()) && !milestones.contains(&dep.as_str()) {
                    return Err(DependencyError::Unknown(d.name.clone(), dep.clone()));
                }
            }
        }
        check_acyclic(&defs)?;
        Ok(Supervisor {
            services: defs
                .into_iter()
                .map(|def| Service {
                    def,
                    state: State::Waiting,
                    failures: 0,
                    restarts: 0,
                })
                .collect(),
            milestones: BTreeSet::new(),
            policy,
            shutting_down: false,
        })
    }

    pub fn reach(&mut self, milestone: &str) {
        self.milestones.insert(milestone.to_owned());
    }

    pub fn has_reached(&self, milestone: &str) -> bool {
        self.milestones.contains(milestone)
    }

    pub fn name(&self, index: usize) -> Option<&str> {
        self.services.get(index).map(|s| s.def.name.as_str())
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    fn is_running(&self, name: &str) -> bool {
        self.services
            .iter()
            .any(|s| s.def.name == name && matches!(s.state, State::Running { .. }))
    }

    fn ready_to_start(&self, s: &Service) -> bool {
        s.def
            .after
            .iter()
            .all(|dep| self.milestones.contains(dep) || self.is_running(dep))
    }

    /// Whether a service that waits for `name` still has a process.
    fn has_live_dependent(&self, name: &str) -> bool {
        self.services.iter().any(|s| {
            s.def.after.iter().any(|d| d == name)
                && matches!(
                    s.state,
                    State::Starting | State::Running { .. } | State::Stopping { .. }
                )
        })
    }

    /// The actions due at `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for i in 0..self.services.len() {
            let Some(s) = self.services.get(i) else { break };
            let next = if self.shutting_down {
                match s.state {
                    State::Waiting | State::Backoff { .. } => Some(State::Stopped),
                    State::Running { pid, .. } if !self.has_live_dependent(&s.def.name) => {
                        actions.push(Action::Signal {
                            index: i,
                            pid,
                            signal: StopSignal::Term,
                        });
                        Some(State::Stopping {
                            pid,
                            kill_at: Some(now + self.policy.stop_timeout),
                        })
                    }
                    State::Stopping {
                        pid,
                        kill_at: Some(at),
                    } if at <= now => {
                        actions.push(Action::Signal {
                            index: i,
                            pid,
                            signal: StopSignal::Kill,
                        });
                        Some(State::Stopping { pid, kill_at: None })
                    }
                    _ => None,
                }
            } else {
                let due = match s.state {
                    State::Waiting => true,
                    State::Backoff { until } => until <= now,
                    _ => false,
                };
                if due && self.ready_to_start(s) {
                    actions.push(Action::Spawn(i));
                    Some(State::Starting)
                } else {
                    None
                }
            };
            if let (Some(state), Some(s)) = (next, self.services.get_mut(i)) {
                s.state = state;
            }
        }
        // A start or a stop can unblock another service at once.
        if !actions.is_empty() {
            actions.extend(self.poll(now));
        }
        actions
    }

    /// When `poll` has something to do next without any event (a back-off
    /// ending, a stop timeout), if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.services
            .iter()
            .filter_map(|s| match s.state {
                State::Backoff { until } if !self.shutting_down => Some(until),
                State::Stopping { kill_at, .. } => kill_at,
                _ => None,
            })
            .min()
    }

    pub fn spawned(&mut self, index: usize, pid: i32, now: Instant) {
        if let Some(s) = self.services.get_mut(index) {
            if s.state == State::Starting {
                s.state = State::Running { pid, since: now };
            }
        }
    }

    /// The command could not be started: counts as a failed run.
    pub fn spawn_failed(&mut self, index: usize, now: Instant) -> Option<Exited> {
        let s = self.services.get_mut(index)?;
        if s.state != State::Starting {
            return None;
        }
        s.state = State::Running { pid: 0, since: now };
        self.finish(index, now)
    }

    /// A process was reaped; `None` if it was not a service's.
    pub fn exited(&mut self, pid: i32, now: Instant) -> Option<Exited> {
        let index = self.services.iter().position(|s| match s.state {
            State::Running { pid: p, .. } | State::Stopping { pid: p, .. } => p == pid,
            _ => false,
        })?;
        self.finish(index, now)
    }

    fn finish(&mut self, index: usize, now: Instant) -> Option<Exited> {
        let policy = self.policy;
        let shutting_down = self.shutting_down;
        let s = self.services.get_mut(index)?;
        let restart_in = match s.state {
            State::Running { since, .. } if !shutting_down => {
                if now.saturating_duration_since(since) >= policy.stable_after {
                    s.failures = 0;
                }
                s.failures = s.failures.saturating_add(1);
                s.restarts += 1;
                let delay = policy.backoff.delay(s.failures);
                s.state = State::Backoff { until: now + delay };
                Some(delay)
            }
            _ => {
                s.state = State::Stopped;
                None
            }
        };
        Some(Exited {
            index,
            name: s.def.name.clone(),
            restart_in,
        })
    }

    /// Stops everything from now on; `poll` sends the signals.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// Shutting down and every service gone.
    pub fn all_stopped(&self) -> bool {
        self.shutting_down && self.services.iter().all(|s| s.state == State::Stopped)
    }

    pub fn status(&self) -> Vec<ServiceStatus> {
        self.services
            .iter()
            .map(|s| {
                let (state, pid) = match s.state {
                    State::Waiting => ("waiting", None),
                    State::Starting => ("starting", None),
                    State::Running { pid, .. } => ("running", Some(pid)),
                    State::Backoff { .. } => ("backoff", None),
                    State::Stopping { pid, .. } => ("stopping", Some(pid)),
                    State::Stopped => ("stopped", None),
                };
                ServiceStatus {
                    name: s.def.name.clone(),
                    state,
                    pid,
                    restarts: s.restarts,
                }
            })
            .collect()
    }
}

/// Depth-first search for a cycle among service dependencies.
fn check_acyclic(defs: &[ServiceDef]) -> Result<(), DependencyError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        defs: &[ServiceDef],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Result<(), DependencyError> {
        match marks.get(i) {
            Some(Mark::Done) | None => return Ok(()),
            Some(Mark::Active) => {
                let start = path.iter().position(|p| *p == i).unwrap_or(0);
                let names = path
                    .get(start..)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| defs.get(*p).map(|d| d.name.clone()))
                    .collect();
                return Err(DependencyError::Cycle(names));
            }
            Some(Mark::New) => {}
        }
        if let Some(m) = marks.get_mut(i) {
            *m = Mark::Active;
        }
        path.push(i);
        if let Some(d) = defs.get(i) {
            for dep in &d.after {
                if let Some(j) = defs.iter().position(|x| &x.name == dep) {
                    visit(j, defs, marks, path)?;
                }
            }
        }
        path.pop();
        if let Some(m) = marks.get_mut(i) {
            *m = Mark::Done;
        }
        Ok(())
    }
    let mut marks = vec![Mark::New; defs.len()];
    for i in 0..defs.len() {
        visit(i, defs, &mut marks, &mut Vec::new())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, after: &[&str]) -> ServiceDef {
        ServiceDef {
            name: name.into(),
            after: after.iter().map(|s| s.to_string()).collect(),
        }
    }

    const MILESTONES: &[&str] = &["network", "provisioned"];

    /// A simulated world: fake pids, simulated time.
    struct Sim {
        sup: Supervisor,
        t0: Instant,
        now: Instant,
        next_pid: i32,
        /// (index, pid) of live processes.
        live: Vec<(usize, i32)>,
        log: Vec<String>,
    }

    impl Sim {
        fn new(defs: Vec<ServiceDef>) -> Sim {
            let t0 = Instant::now();
            Sim {
                sup: Supervisor::new(defs, MILESTONES, Policy::default()).unwrap(),
                t0,
                now: t0,
                next_pid: 100,
                live: Vec::new(),
                log: Vec::new(),
            }
        }

        fn secs(&self) -> f64 {
            (self.now - self.t0).as_secs_f64()
        }

        /// Polls and performs the actions: spawns succeed, TERM is obeyed
        /// by services whose name doesn't start with "stubborn".
        fn step(&mut self) {
            loop {
                let actions = self.sup.poll(self.now);
                if actions.is_empty() {
                    return;
                }
                self.perform(actions);
            }
        }

        fn perform(&mut self, actions: Vec<Action>) {
            for a in actions {
                let name = |sup: &Supervisor, i| sup.name(i).unwrap_or("?").to_owned();
                match a {
                    Action::Spawn(i) => {
                        self.next_pid += 1;
                        self.sup.spawned(i, self.next_pid, self.now);
                        self.live.push((i, self.next_pid));
                        self.log
                            .push(format!("{} start {}", self.secs(), name(&self.sup, i)));
                    }
                    Action::Signal { index, pid, signal } => {
                        let n = name(&self.sup, index);
                        self.log.push(format!("{} {signal:?} {n}", self.secs()));
                        if signal == StopSignal::Kill || !n.starts_with("stubborn") {
                            self.kill(pid);
                        }
                    }
                }
            }
        }

        fn kill(&mut self, pid: i32) {
            self.live.retain(|(_, p)| *p != pid);
            if let Some(e) = self.sup.exited(pid, self.now) {
                self.log.push(format!(
                    "{} exit {} restart {:?}",
                    self.secs(),
                    e.name,
                    e.restart_in.map(|d| d.as_secs())
                ));
            }
        }

        fn pid_of(&self, index: usize) -> Option<i32> {
            self.live.iter().find(|(i, _)| *i == index).map(|(_, p)| *p)
        }

        fn advance(&mut self, d: Duration) {
            self.now += d;
            self.step();
        }

        /// Runs deadlines until `until` seconds.
        fn run_until(&mut self, until: f64) {
            loop {
                self.step();
                match self.sup.next_deadline() {
                    Some(d) if (d - self.t0).as_secs_f64() <= until => self.now = self.now.max(d),
                    _ => break,
                }
            }
            self.now = self.t0 + Duration::from_secs_f64(until);
            self.step();
        }
    }

    #[test]
    fn rejects_bad_dependencies() {
        let p = Policy::default();
        assert_eq!(
            Supervisor::new(vec![def("a", &[]), def("a", &[])], MILESTONES, p).unwrap_err(),
            DependencyError::Duplicate("a".into())
        );
        assert_eq!(
            Supervisor::new(vec![def("a", &["b"])], MILESTONES, p).unwrap_err(),
            DependencyError::Unknown("a".into(), "b".into())
        );
        assert_eq!(
            Supervisor::new(
                vec![def("a", &["b"]), def("b", &["c"]), def("c", &["b"])],
                MILESTONES,
                p
            )
            .unwrap_err(),
            DependencyError::Cycle(vec!["b".into(), "c".into()])
        );
        assert!(Supervisor::new(vec![def("a", &["a"])], MILESTONES, p).is_err());
        assert!(Supervisor::new(
            vec![def("a", &["b", "network"]), def("b", &["c"]), def("c", &[])],
            MILESTONES,
            p
        )
        .is_ok());
    }

    #[test]
    fn starts_in_dependency_order_when_milestones_come() {
        let mut sim = Sim::new(vec![
            def("node", &["provisioned", "babeld"]),
            def("babeld", &["network"]),
            def("console", &[]),
        ]);
        sim.step();
        assert_eq!(sim.log, ["0 start console"]);
        sim.sup.reach("provisioned");
        sim.advance(Duration::from_secs(1));
        assert_eq!(sim.log.len(), 1, "node must wait for babeld");
        sim.sup.reach("network");
        sim.advance(Duration::from_secs(1));
        assert_eq!(&sim.log[1..], ["2 start babeld", "2 start node"]);
    }

    #[test]
    fn restarts_with_capped_exponential_backoff() {
        let mut sim = Sim::new(vec![def("flappy", &[])]);
        sim.step();
        let mut delays = Vec::new();
        for _ in 0..9 {
            let pid = sim.pid_of(0).unwrap();
            sim.kill(pid);
            let start = sim.now;
            // Nothing happens before the deadline...
            let deadline = sim.sup.next_deadline().unwrap();
            sim.now = deadline - Duration::from_millis(1);
            sim.step();
            assert_eq!(sim.pid_of(0), None);
            // ...and the restart happens at it.
            sim.now = deadline;
            sim.step();
            assert!(sim.pid_of(0).is_some());
            delays.push((sim.now - start).as_secs());
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(sim.sup.status()[0].restarts, 9);
    }

    #[test]
    fn stable_run_resets_the_backoff() {
        let mut sim = Sim::new(vec![def("svc", &[])]);
        sim.step();
        let mut restart_after_quick_crash = || {
            sim.kill(sim.pid_of(0).unwrap());
            sim.now = sim.sup.next_deadline().unwrap();
            sim.step();
        };
        for _ in 0..4 {
            restart_after_quick_crash();
        }
        // Four quick failures; a fifth run, shorter than the stable period,
        // fails too: 16 s.
        sim.advance(Duration::from_secs(29));
        sim.kill(sim.pid_of(0).unwrap());
        assert!(
            sim.log.last().unwrap().ends_with("restart Some(16)"),
            "{:?}",
            sim.log
        );
        sim.now = sim.sup.next_deadline().unwrap();
        sim.step();
        // This one runs for the stable period: back to 1 s.
        sim.advance(Duration::from_secs(30));
        sim.kill(sim.pid_of(0).unwrap());
        assert!(
            sim.log.last().unwrap().ends_with("restart Some(1)"),
            "{:?}",
            sim.log
        );
    }

    #[test]
    fn spawn_failures_back_off_too() {
        let mut sup =
            Supervisor::new(vec![def("missing", &[])], MILESTONES, Policy::default()).unwrap();
        let t0 = Instant::now();
        assert_eq!(sup.poll(t0), [Action::Spawn(0)]);
        let e = sup.spawn_failed(0, t0).unwrap();
        assert_eq!(e.restart_in, Some(Duration::from_secs(1)));
        assert_eq!(sup.poll(t0), []);
        assert_eq!(sup.poll(t0 + Duration::from_secs(1)), [Action::Spawn(0)]);
        assert_eq!(
            sup.spawn_failed(0, t0).unwrap().restart_in,
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn shutdown_stops_dependents_first() {
        let mut sim = Sim::new(vec![
            def("babeld", &["network"]),
            def("node", &["babeld"]),
            def("console", &[]),
            def("late", &["provisioned"]),
        ]);
        sim.sup.reach("network");
        sim.step();
        sim.log.clear();
        sim.sup.begin_shutdown();
        sim.advance(Duration::from_secs(1));
        assert_eq!(
            sim.log,
            [
                "1 Term node",
                "1 exit node restart None",
                "1 Term console",
                "1 exit console restart None",
                "1 Term babeld",
                "1 exit babeld restart None",
            ]
        );
        assert!(sim.sup.all_stopped());
        // Never started, never will.
        assert_eq!(sim.sup.status()[3].state, "stopped");
        assert!(sim.sup.poll(sim.now).is_empty());
    }

    #[test]
    fn stubborn_service_is_killed_after_the_timeout() {
        let mut sim = Sim::new(vec![def("base", &[]), def("stubborn", &["base"])]);
        sim.step();
        sim.log.clear();
        sim.sup.begin_shutdown();
        sim.step();
        assert_eq!(sim.log, ["0 Term stubborn"]);
        // The base waits while its dependent lingers.
        sim.advance(Duration::from_secs(4));
        assert_eq!(sim.log.len(), 1);
        assert!(!sim.sup.all_stopped());
        assert_eq!(
            sim.sup.next_deadline(),
            Some(sim.t0 + Duration::from_secs(5))
        );
        sim.run_until(5.0);
        assert_eq!(
            &sim.log[1..],
            [
                "5 Kill stubborn",
                "5 exit stubborn restart None",
                "5 Term base",
                "5 exit base restart None"
            ]
        );
        assert!(sim.sup.all_stopped());
    }

    #[test]
    fn shutdown_during_backoff_cancels_the_restart() {
        let mut sim = Sim::new(vec![def("svc", &[])]);
        sim.step();
        sim.kill(sim.pid_of(0).unwrap());
        sim.sup.begin_shutdown();
        sim.run_until(120.0);
        assert!(sim.sup.all_stopped());
        assert_eq!(sim.log.iter().filter(|l| l.contains(" start ")).count(), 1);
    }

    #[test]
    fn spawn_reported_after_shutdown_began_is_stopped() {
        let mut sup =
            Supervisor::new(vec![def("svc", &[])], MILESTONES, Policy::default()).unwrap();
        let t0 = Instant::now();
        assert_eq!(sup.poll(t0), [Action::Spawn(0)]);
        sup.begin_shutdown();
        sup.spawned(0, 7, t0);
        assert_eq!(
            sup.poll(t0),
            [Action::Signal {
                index: 0,
                pid: 7,
                signal: StopSignal::Term
            }]
        );
        assert_eq!(sup.exited(7, t0).unwrap().restart_in, None);
        assert!(sup.all_stopped());
    }

    #[test]
    fn unknown_pids_are_not_services() {
        let mut sim = Sim::new(vec![def("svc", &[])]);
        sim.step();
        assert_eq!(sim.sup.exited(4242, sim.now), None);
        assert_eq!(sim.sup.status()[0].state, "running");
    }

    #[test]
    fn status_reports_states_and_pids() {
        let mut sim = Sim::new(vec![def("a", &[]), def("b", &["network"])]);
        sim.step();
        let st = sim.sup.status();
        assert_eq!((st[0].state, st[0].pid), ("running", Some(101)));
        assert_eq!((st[1].state, st[1].pid), ("waiting", None));
    }
}
