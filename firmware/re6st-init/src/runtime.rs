//! Init itself: the boot sequence, then the event loop that supervises
//! services, reaps orphans, brings milestones (network, clock,
//! provisioned), logs when the node first reaches the overlay, serves the
//! control socket and waits for a shutdown request; then the shutdown
//! sequence.
//!
//! Shutdown requests: the control socket (`reboot`, `poweroff`, `halt`),
//! or signals as busybox init takes them: SIGTERM and SIGINT (Ctrl-Alt-Del)
//! reboot, SIGUSR1 halts, SIGUSR2 powers off. When init is not PID 1
//! (tests, a host), SIGTERM and SIGINT mean poweroff: stop and exit.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::bootslot::Slot;
use crate::clock::{self, Decision};
use crate::control::{self, Request, Shutdown};
use crate::datapart_io::{self, DataDir};
use crate::firmware_services;
use crate::layout::Layout;
use crate::logging::{self, RingLog};
use crate::profile::{Profile, ServiceSpec};
use crate::supervisor::{Action, DependencyError, Policy, ServiceDef, StopSignal, Supervisor};
use crate::upgrade::{self, BootInfo};
use crate::{network, proc, provision, sources, system, timekeeping, trial};

pub const NETWORK: &str = "network";
pub const CLOCK: &str = "clock";
pub const PROVISIONED: &str = "provisioned";
pub const MILESTONES: &[&str] = &[NETWORK, CLOCK, PROVISIONED];

/// The service that gets the console as standard input.
pub const CONSOLE_SERVICE: &str = "console";

const RING_LINES: usize = 2000;
const RING_BYTES: usize = 256 * 1024;
/// After this, shutdown goes on even if services linger.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);
/// TERM-to-KILL grace for processes left at the very end.
const FINAL_GRACE: Duration = Duration::from_secs(2);
const NETWORK_TIME_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a slot on trial asks the node whether it is in the overlay.
const TRIAL_CHECK_EVERY: Duration = Duration::from_secs(5);
/// How often init asks the node whether it has reached the overlay, until
/// it has: the console line it then logs times a boot (qemu-tests), so
/// more often than the trial's checks.
const OVERLAY_CHECK_EVERY: Duration = Duration::from_secs(1);
/// After this long out of the overlay, ask less often: a router cut off
/// for hours need not ask its node every second.
const OVERLAY_FAST_FOR: Duration = Duration::from_secs(600);
const OVERLAY_CHECK_SLOWLY: Duration = Duration::from_secs(15);
/// The node's control socket in its run directory (`re6st ctl`'s).
const NODE_CTL_SOCKET: &str = "ctl.sock";
/// A node status is a few KiB per tunnel; more is not one.
const NODE_STATUS_MAX: u64 = 1 << 20;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Root directory prefix; set, init never mounts, sets the clock or
    /// reboots (tests, a host).
    pub root: Option<PathBuf>,
    pub verbose: bool,
    /// With `root`: still bring up loopback, write the network sysctls and
    /// apply the profile's WAN/LAN settings (a test in its own network
    /// namespace).
    pub network: bool,
}

/// Everything the event loop works with.
struct Init {
    layout: Layout,
    pid1: bool,
    profile: Profile,
    data: DataDir,
    specs: Vec<ServiceSpec>,
    sup: Supervisor,
    ring: RingLog,
    floor: Option<SystemTime>,
    milestones: watch::Sender<BTreeSet<String>>,
    /// The A/B layout we were booted with (none outside the firmware).
    boot: Option<BootInfo>,
    /// A slot on trial, waiting to be confirmed (see [`trial`]).
    trial: Option<trial::Monitor>,
    /// The task asking the node how it stands, while on trial.
    trial_task: Option<tokio::task::JoinHandle<()>>,
    /// When init started (the reference of the overlay line).
    started: Instant,
    /// How long after `started` the node first reached the overlay.
    overlay_after: Option<Duration>,
}

enum LoopEvent {
    Milestone(&'static str),
    Control(Request, oneshot::Sender<String>),
    Trial(trial::Observation),
    /// The node is in the overlay for the first time this boot (why).
    OverlayReached(&'static str),
}

/// Drops services whose definition the supervisor refuses (duplicate,
/// unknown dependency, cycle) until it accepts the rest.
fn build_supervisor(mut specs: Vec<ServiceSpec>) -> (Vec<ServiceSpec>, Supervisor) {
    loop {
        let defs = specs
            .iter()
            .map(|s| ServiceDef {
                name: s.name.clone(),
                after: s.after.clone(),
            })
            .collect();
        match Supervisor::new(defs, MILESTONES, Policy::default()) {
            Ok(sup) => return (specs, sup),
            Err(e) => {
                error!("services: {e}");
                let drop_names: Vec<String> = match e {
                    DependencyError::Duplicate(n) => {
                        // Keep the first definition (the profile's).
                        if let Some(i) = specs.iter().rposition(|s| s.name == n) {
                            specs.remove(i);
                        }
                        continue;
                    }
                    DependencyError::Unknown(n, _) => vec![n],
                    DependencyError::Cycle(names) => names,
                };
                specs.retain(|s| !drop_names.contains(&s.name));
            }
        }
    }
}

fn set_clock(layout: &Layout, decision: Decision, why: &str) {
    let Decision::Set(t) = decision else {
        return;
    };
    let shown = httpdate::fmt_http_date(t);
    if !layout.system {
        // Tests run the whole process tree under libfaketime with a shared
        // timestamp file: setting the clock is writing it.
        if let Some(file) = std::env::var_os(timekeeping::FAKETIME_FILE_ENV) {
            match timekeeping::set_fake_clock(Path::new(&file), t) {
                Ok(()) => info!("clock set to {shown} ({why}; libfaketime)"),
                Err(e) => warn!("cannot set the fake clock: {e}"),
            }
            return;
        }
        info!("clock: would set to {shown} ({why})");
        return;
    }
    match system::set_clock(t) {
        Ok(()) => info!("clock set to {shown} ({why})"),
        Err(e) => warn!("cannot set the clock to {shown}: {e}"),
    }
}

fn save_clock(data: &DataDir, floor: Option<SystemTime>) {
    // Never save less than the floor: a clock that could not be set must
    // not lower it.
    let now = clock::floor([Some(SystemTime::now()), floor]).unwrap_or_else(SystemTime::now);
    if let Err(e) = timekeeping::save(&data.clock_file(), now) {
        warn!("cannot save the clock: {e}");
    }
}

/// Runs init to the end; returns only when not a real PID 1.
pub fn run(opts: Options) -> ExitCode {
    let started = Instant::now();
    let pid1 = std::process::id() == 1;
    let layout = Layout {
        root: opts.root.clone().unwrap_or_else(|| PathBuf::from("/")),
        system: pid1 && opts.root.is_none(),
    };
    let ring = RingLog::new(RING_LINES, RING_BYTES);
    logging::init(&ring, opts.verbose, pid1);
    info!(
        "re6st init {} (root {}, {})",
        env!("CARGO_PKG_VERSION"),
        layout.root.display(),
        if layout.system {
            "system"
        } else {
            "no system changes"
        }
    );
    if layout.system {
        system::mount_early();
        // Ctrl-Alt-Del becomes SIGINT, handled as a clean reboot.
        let _ = nix::sys::reboot::set_cad_enabled(false);
    } else if !pid1 {
        // Orphans of our services come to us, to be reaped and stopped.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            warn!("cannot become a subreaper: {e}");
        }
    }

    let profile = sources::load(&layout);
    let own_network = layout.system || opts.network;
    if layout.system {
        system::set_hostname(&profile.hostname);
        system::load_modules(&profile.modules);
    }
    if own_network {
        system::loopback_up();
        system::write_sysctls(&network::sysctls(&profile));
    }
    let data = datapart_io::prepare(&layout, &profile);
    info!(
        "data in {} ({})",
        data.path.display(),
        if data.persistent {
            "persistent"
        } else {
            "RAM only"
        }
    );

    let floor = clock::floor([
        timekeeping::read_saved(&data.clock_file()),
        timekeeping::image_time(&layout.board_defaults()),
    ]);
    set_clock(
        &layout,
        clock::decide(SystemTime::now(), floor, None),
        "saved time",
    );

    let net = network::plan(&profile);
    if own_network {
        apply_network(&layout, &net);
    }
    let mut specs = profile.services.clone();
    specs.extend(net.services.iter().cloned());
    match std::env::current_exe() {
        Ok(exe) => specs.extend(firmware_services::services(
            &profile,
            &firmware_services::Paths {
                exe,
                identity: data.identity(),
                state: data.path.join("node"),
                run: layout.path("/run/re6stnet"),
                status_httpd: Some(layout.path(firmware_services::STATUS_HTTPD))
                    .filter(|p| p.exists()),
            },
        )),
        Err(e) => error!("cannot find our own binary: {e}; no re6st node"),
    }
    let (specs, sup) = build_supervisor(specs);

    let boot = BootInfo::from_vars(|k| std::env::var(k).ok());
    let policy = trial::Policy {
        deadline: profile
            .trial_deadline
            .unwrap_or(trial::Policy::default().deadline),
        ..trial::Policy::default()
    };
    let trial = boot.as_ref().and_then(|b| open_slots(&layout, b, policy));
    let (milestones, _) = watch::channel(BTreeSet::new());
    let mut init = Init {
        layout,
        pid1,
        profile,
        data,
        specs,
        sup,
        ring,
        floor,
        milestones,
        boot,
        trial,
        trial_task: None,
        started,
        overlay_after: None,
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| {
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, event_loop(&mut init))
        });
    let how = match outcome {
        Ok(Ok(how)) => how,
        Ok(Err(e)) | Err(e) => {
            error!("event loop failed: {e}");
            Shutdown::Reboot
        }
    };

    info!("{}: stopping what is left", how.name());
    save_clock(&init.data, init.floor);
    system::kill_remaining(init.pid1, FINAL_GRACE);
    if init.layout.system {
        system::final_shutdown(how, init.data.mounted.as_deref());
    }
    info!("stopped ({})", how.name());
    ExitCode::SUCCESS
}

/// Records the A/B layout for `re6st init upgrade` and logs the slot; a
/// slot on trial gets a [`trial::Monitor`].
fn open_slots(layout: &Layout, boot: &BootInfo, policy: trial::Policy) -> Option<trial::Monitor> {
    if let Err(e) = boot.save(&layout.root) {
        warn!("cannot record the boot slot: {e}");
    }
    match upgrade::read_env(&boot.bootenv) {
        Ok((env, _)) => {
            info!("boot slot: {}", env.describe(boot.booted));
            env.on_trial(boot.booted).then(|| {
                info!(
                    "slot {} is on trial: confirmed once in the overlay for {:?} (an established tunnel and a route to the registry's node, or to peers if the registry is down), else reboot and fall back after {:?}",
                    boot.booted, policy.stable, policy.deadline
                );
                trial::Monitor::new(policy, Instant::now().into_std())
            })
        }
        Err(e) => {
            warn!("boot environment {}: {e}", boot.bootenv.display());
            None
        }
    }
}

fn apply_network(layout: &Layout, net: &network::NetPlan) {
    for cmd in &net.commands {
        let Some((prog, args)) = cmd.split_first() else {
            continue;
        };
        let Some(path) = proc::find_program(prog) else {
            warn!("network: no {prog} in the image");
            break;
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match proc::run(&path, &args) {
            Ok(0) => debug!("network: {}", cmd.join(" ")),
            Ok(code) => warn!("network: {} failed ({code})", cmd.join(" ")),
            Err(e) => warn!("network: {}: {e}", cmd.join(" ")),
        }
    }
    if let Some(text) = &net.resolv_conf {
        if let Err(e) = std::fs::write(layout.resolv_conf(), text) {
            warn!("cannot write resolv.conf: {e}");
        }
    }
}

impl Init {
    fn reach(&mut self, milestone: &str) {
        if self.sup.has_reached(milestone) {
            return;
        }
        info!("milestone {milestone}");
        self.sup.reach(milestone);
        self.milestones.send_modify(|m| {
            m.insert(milestone.to_owned());
        });
    }

    fn perform(&mut self, now: Instant) {
        for action in self.sup.poll(now.into_std()) {
            match action {
                Action::Spawn(i) => self.spawn(i, now),
                Action::Signal { index, pid, signal } => {
                    let sig = match signal {
                        StopSignal::Term => Signal::SIGTERM,
                        StopSignal::Kill => Signal::SIGKILL,
                    };
                    let name = self.sup.name(index).unwrap_or("?");
                    info!("stopping {name} (pid {pid}) with {sig}");
                    if let Err(e) = killpg(Pid::from_raw(pid), sig) {
                        debug!("signal {name}: {e}");
                    }
                }
            }
        }
    }

    fn spawn(&mut self, index: usize, now: Instant) {
        let Some(spec) = self.specs.get(index) else {
            return;
        };
        let identity = self.data.identity();
        let env: [(&str, &OsStr); 2] = [
            ("RE6ST_DATA", self.data.path.as_os_str()),
            ("RE6ST_IDENTITY", identity.as_os_str()),
        ];
        let console = spec.name == CONSOLE_SERVICE;
        match proc::spawn_service(&spec.argv, &self.layout.root, &env, console) {
            Ok(pid) => {
                info!("started {} (pid {pid}): {}", spec.name, spec.argv.join(" "));
                self.sup.spawned(index, pid as i32, now.into_std());
            }
            Err(e) => {
                let name = spec.name.clone();
                if let Some(ex) = self.sup.spawn_failed(index, now.into_std()) {
                    warn!(
                        "cannot start {name}: {e}; retry in {:?}",
                        ex.restart_in.unwrap_or_default()
                    );
                }
            }
        }
    }

    /// Reaps every exited child: services (restarted later) and orphans.
    fn reap(&mut self) {
        loop {
            let (pid, how) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, format!("exit code {code}")),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, format!("signal {sig}")),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            match self.sup.exited(pid.as_raw(), Instant::now().into_std()) {
                Some(ex) => match ex.restart_in {
                    Some(d) => warn!("{} (pid {pid}) ended ({how}); restart in {d:?}", ex.name),
                    None => info!("{} (pid {pid}) stopped ({how})", ex.name),
                },
                None => debug!("reaped orphan {pid} ({how})"),
            }
        }
    }

    fn status(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "re6st init {}: {}{}",
            env!("CARGO_PKG_VERSION"),
            if self.sup.is_shutting_down() {
                "shutting down"
            } else {
                "running"
            },
            if self.layout.system {
                ""
            } else {
                " (no system changes)"
            },
        );
        let _ = writeln!(out, "hostname: {}", self.profile.hostname);
        let _ = writeln!(
            out,
            "data: {} ({})",
            self.data.path.display(),
            if self.data.persistent {
                "persistent"
            } else {
                "RAM only"
            }
        );
        let reached: Vec<&str> = MILESTONES
            .iter()
            .copied()
            .filter(|m| self.sup.has_reached(m))
            .collect();
        let _ = writeln!(out, "milestones: {}", reached.join(" "));
        if let Some(boot) = &self.boot {
            let slot = match upgrade::read_env(&boot.bootenv) {
                Ok((env, _)) => env.describe(boot.booted),
                Err(e) => format!("booted {} (boot environment: {e})", boot.booted),
            };
            let _ = writeln!(out, "slot: {slot}");
        }
        if let Some(t) = &self.trial {
            let _ = writeln!(out, "trial: {}", t.describe(Instant::now().into_std()));
        }
        if self.profile.provisioning.is_some() {
            let overlay = match self.overlay_after {
                Some(d) => format!("reached {:.1}s after init started", d.as_secs_f64()),
                None => "not reached yet".into(),
            };
            let _ = writeln!(out, "overlay: {overlay}");
        }
        let _ = writeln!(
            out,
            "{:<16} {:<9} {:>7} {:>8}",
            "SERVICE", "STATE", "PID", "RESTARTS"
        );
        for s in self.sup.status() {
            let pid = s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "{:<16} {:<9} {:>7} {:>8}",
                s.name, s.state, pid, s.restarts
            );
        }
        out
    }

    /// Confirms the slot on trial once it has joined the overlay, or
    /// reboots at the deadline (the initramfs then falls back).
    fn check_trial(&mut self, shutdown: &mut Option<(Shutdown, Instant)>) {
        let (Some(boot), Some(monitor)) = (self.boot.as_ref(), self.trial.as_mut()) else {
            return;
        };
        let booted: Slot = boot.booted;
        match monitor.poll(Instant::now().into_std()) {
            None => {}
            Some(trial::Action::Confirm { why }) => {
                let done = upgrade::read_env(&boot.bootenv).and_then(|(env, _)| {
                    match env.confirm(booted) {
                        Some(next) => upgrade::store_env(&boot.bootenv, &next).map(|()| next),
                        None => Ok(env),
                    }
                });
                match done {
                    Ok(env) => info!(
                        "slot {booted} confirmed ({why}): it is the active slot now ({})",
                        env.describe(booted)
                    ),
                    Err(e) => error!("cannot confirm slot {booted}: {e}"),
                }
                self.end_trial();
            }
            Some(trial::Action::GiveUp { last }) => {
                warn!(
                    "slot {booted} on trial did not join the overlay in time ({last}): rebooting to fall back"
                );
                self.end_trial();
                self.begin_shutdown(
                    Shutdown::Reboot,
                    "slot on trial not in the overlay",
                    shutdown,
                );
            }
        }
    }

    /// The monitor and its task go: the node is not asked any more.
    fn end_trial(&mut self) {
        self.trial = None;
        if let Some(t) = self.trial_task.take() {
            t.abort();
        }
    }

    fn begin_shutdown(
        &mut self,
        how: Shutdown,
        why: &str,
        deadline: &mut Option<(Shutdown, Instant)>,
    ) {
        if deadline.is_some() {
            info!(
                "{} requested ({why}) while already shutting down",
                how.name()
            );
            return;
        }
        info!("{} requested ({why}): stopping services", how.name());
        self.sup.begin_shutdown();
        *deadline = Some((how, Instant::now() + SHUTDOWN_DEADLINE));
    }

    /// Background tasks bringing milestones.
    fn start_tasks(
        &mut self,
        events: &mpsc::UnboundedSender<LoopEvent>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        // network
        if self.layout.system {
            let tx = events.clone();
            tasks.push(tokio::task::spawn_local(async move {
                loop {
                    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
                    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
                    if network::has_default_route(&v4, &v6) {
                        let _ = tx.send(LoopEvent::Milestone(NETWORK));
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }));
        } else {
            // Not our network to manage: take it as it is.
            self.reach(NETWORK);
        }
        // clock
        let registry = self
            .profile
            .provisioning
            .as_ref()
            .map(|p| p.registry.clone());
        // A time saved by an earlier boot is good enough to start with (the
        // clock never goes below it): a router whose registry and NTP are
        // down must still come up. Network time still corrects it later.
        let saved = timekeeping::read_saved(&self.data.clock_file()).is_some();
        if saved {
            info!("clock: starting from the saved time");
            self.reach(CLOCK);
        }
        if self.profile.ntp.is_empty() && registry.is_none() {
            self.reach(CLOCK);
        } else {
            let tx = events.clone();
            let mut reached = self.milestones.subscribe();
            let ntp = self.profile.ntp.clone();
            let layout = self.layout.clone();
            let floor = self.floor;
            tasks.push(tokio::task::spawn_local(async move {
                let _ = reached.wait_for(|m| m.contains(NETWORK)).await;
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match timekeeping::network_time(&ntp, registry.as_deref(), NETWORK_TIME_TIMEOUT)
                        .await
                    {
                        Ok((source, t)) => {
                            let why = format!("{source:?}");
                            set_clock(
                                &layout,
                                clock::decide(SystemTime::now(), floor, Some(t)),
                                &why,
                            );
                            let _ = tx.send(LoopEvent::Milestone(CLOCK));
                            return;
                        }
                        Err(e) => {
                            let delay = provision::RETRY.delay(attempt);
                            warn!("no network time ({e}); retry in {delay:?}");
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            }));
        }
        // provisioning
        let identity = self.data.identity();
        if provision::is_provisioned(&identity) {
            self.reach(PROVISIONED);
        } else if let Some(p) = self.profile.provisioning.clone() {
            let tx = events.clone();
            let mut reached = self.milestones.subscribe();
            tasks.push(tokio::task::spawn_local(async move {
                let _ = reached.wait_for(|m| m.contains(NETWORK)).await;
                provision::provision_with_retries(
                    &p,
                    identity,
                    provision::RETRY,
                    provision::CALL_TIMEOUT,
                )
                .await;
                let _ = tx.send(LoopEvent::Milestone(PROVISIONED));
            }));
        } else {
            warn!("no registry in the profile: this router will not be provisioned");
        }
        // The overlay: only a provisioned router runs a node.
        if self.profile.provisioning.is_some() {
            let tx = events.clone();
            let socket = self.layout.path("/run/re6stnet").join(NODE_CTL_SOCKET);
            let started = self.started;
            tasks.push(tokio::task::spawn_local(async move {
                let why = wait_for_overlay(&socket, started).await;
                let _ = tx.send(LoopEvent::OverlayReached(why));
            }));
        }
        if self.trial.is_some() {
            let tx = events.clone();
            let socket = self.layout.path("/run/re6stnet").join(NODE_CTL_SOCKET);
            let registry = self
                .profile
                .provisioning
                .as_ref()
                .map(|p| p.registry.clone());
            self.trial_task = Some(tokio::task::spawn_local(async move {
                loop {
                    tokio::time::sleep(TRIAL_CHECK_EVERY).await;
                    let obs = observe_overlay(&socket, registry.as_deref()).await;
                    if tx.send(LoopEvent::Trial(obs)).is_err() {
                        return;
                    }
                }
            }));
        }
        tasks
    }
}

/// Asks the node until it is in the overlay by the trial's test without
/// its fallback (an established tunnel, babel routes and a route to the
/// registry's node: no registry over HTTP is asked); returns why.
async fn wait_for_overlay(socket: &Path, started: Instant) -> &'static str {
    loop {
        let every = if started.elapsed() < OVERLAY_FAST_FOR {
            OVERLAY_CHECK_EVERY
        } else {
            OVERLAY_CHECK_SLOWLY
        };
        tokio::time::sleep(every).await;
        if let Ok(why) = trial::assess(&observe_overlay(socket, None).await) {
            return why;
        }
    }
}

/// Asks the node how it stands in the overlay and, if it has no route to
/// the registry's node, whether the registry answers over HTTP at all.
async fn observe_overlay(socket: &Path, registry: Option<&str>) -> trial::Observation {
    use tokio::io::AsyncReadExt;
    let read = async {
        let stream = tokio::net::UnixStream::connect(socket).await?;
        let mut text = String::new();
        stream
            .take(NODE_STATUS_MAX)
            .read_to_string(&mut text)
            .await?;
        Ok::<_, std::io::Error>(text)
    };
    let text = match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return trial::Observation::NoAnswer(format!("{}: {e}", socket.display())),
        Err(_) => return trial::Observation::NoAnswer(format!("{}: timeout", socket.display())),
    };
    let overlay = match trial::parse_status(&text) {
        Ok(o) => o,
        Err(e) => return trial::Observation::NoAnswer(e),
    };
    let registry_answers = match (overlay.registry_cut, registry) {
        (true, Some(url)) => Some(
            timekeeping::network_time(&[], Some(url), NETWORK_TIME_TIMEOUT)
                .await
                .is_ok(),
        ),
        _ => None,
    };
    trial::Observation::Node {
        overlay,
        registry_answers,
    }
}

/// Serves control connections, forwarding requests to the loop.
fn serve_control(
    init: &Init,
    events: &mpsc::UnboundedSender<LoopEvent>,
) -> Option<tokio::task::JoinHandle<()>> {
    let path = init.layout.control_socket();
    let listener = match control::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            warn!("no control socket at {}: {e}", path.display());
            return None;
        }
    };
    let ring = init.ring.clone();
    let events = events.clone();
    Some(tokio::task::spawn_local(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let ring = ring.clone();
            let events = events.clone();
            tokio::task::spawn_local(async move {
                let answer = match control::read_request(&mut stream).await {
                    Err(e) => e,
                    Ok(Request::Log) => ring.contents(),
                    Ok(req) => {
                        let (tx, rx) = oneshot::channel();
                        if events.send(LoopEvent::Control(req, tx)).is_err() {
                            "init is stopping\n".to_owned()
                        } else {
                            rx.await.unwrap_or_else(|_| "init is stopping\n".to_owned())
                        }
                    }
                };
                control::write_answer(&mut stream, &answer).await;
            });
        }
    }))
}

async fn event_loop(init: &mut Init) -> std::io::Result<Shutdown> {
    let mut sigchld = signal(SignalKind::child())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    let mut sigusr2 = signal(SignalKind::user_defined2())?;
    let term_means = if init.pid1 {
        Shutdown::Reboot
    } else {
        Shutdown::Poweroff
    };

    let (tx, mut events) = mpsc::unbounded_channel();
    let mut tasks = init.start_tasks(&tx);
    // Kept to the end, so that status works while services stop.
    let control_task = serve_control(init, &tx);
    let mut save_timer =
        tokio::time::interval_at(Instant::now() + clock::SAVE_INTERVAL, clock::SAVE_INTERVAL);
    let mut shutdown: Option<(Shutdown, Instant)> = None;
    // Children may have exited before the SIGCHLD handler existed.
    init.reap();
    loop {
        init.perform(Instant::now());
        if let Some((_, deadline)) = shutdown {
            if init.sup.all_stopped() {
                info!("all services stopped");
                break;
            }
            if Instant::now() >= deadline {
                warn!("services still running after {SHUTDOWN_DEADLINE:?}: going on");
                break;
            }
        }
        if shutdown.is_none() {
            init.check_trial(&mut shutdown);
        }
        let wake = [
            init.sup.next_deadline().map(Instant::from_std),
            shutdown.map(|(_, d)| d),
            init.trial
                .as_ref()
                .and_then(trial::Monitor::next_deadline)
                .map(Instant::from_std),
        ]
        .into_iter()
        .flatten()
        .min();
        tokio::select! {
            _ = sigchld.recv() => init.reap(),
            _ = sigterm.recv() => init.begin_shutdown(term_means, "SIGTERM", &mut shutdown),
            _ = sigint.recv() => init.begin_shutdown(term_means, "SIGINT", &mut shutdown),
            _ = sigusr1.recv() => init.begin_shutdown(Shutdown::Halt, "SIGUSR1", &mut shutdown),
            _ = sigusr2.recv() => init.begin_shutdown(Shutdown::Poweroff, "SIGUSR2", &mut shutdown),
            Some(ev) = events.recv() => match ev {
                LoopEvent::Milestone(m) => {
                    init.reach(m);
                    if m == CLOCK {
                        // A good time is worth keeping at once.
                        save_clock(&init.data, init.floor);
                    }
                }
                LoopEvent::Control(Request::Shutdown(how), reply) => {
                    init.begin_shutdown(how, "control socket", &mut shutdown);
                    let _ = reply.send(format!("{}\n", how.name()));
                }
                LoopEvent::Control(_, reply) => {
                    let _ = reply.send(init.status());
                }
                LoopEvent::OverlayReached(why) => {
                    let after = init.started.elapsed();
                    init.overlay_after = Some(after);
                    info!(
                        "overlay reached: {why} ({:.1}s after init started)",
                        after.as_secs_f64()
                    );
                }
                LoopEvent::Trial(obs) => {
                    if let Some(t) = init.trial.as_mut() {
                        match trial::assess(&obs) {
                            Ok(_) => debug!("trial: in the overlay"),
                            Err(e) => debug!("trial: {e}"),
                        }
                        t.handle(&obs, Instant::now().into_std());
                    }
                }
            },
            _ = save_timer.tick() => save_clock(&init.data, init.floor),
            _ = sleep_until(wake) => {}
        }
        if shutdown.is_some() {
            for t in tasks.drain(..) {
                t.abort();
            }
            if let Some(t) = init.trial_task.take() {
                t.abort();
            }
        }
    }
    let how = shutdown.map_or(Shutdown::Reboot, |(h, _)| h);
    if let Some(t) = control_task {
        t.abort();
    }
    let _ = std::fs::remove_file(init.layout.control_socket());
    // A final reap, so that services that just exited are not "remaining".
    init.reap();
    Ok(how)
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, argv: &str, after: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            argv: argv.split(' ').map(String::from).collect(),
            after: after.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn refused_services_are_dropped_and_the_rest_kept() {
        let (kept, sup) = build_supervisor(vec![
            spec("a", "first", &[NETWORK]),
            spec("b", "x", &["nowhere"]),
            spec("c", "x", &["d"]),
            spec("d", "x", &["c"]),
            spec("e", "x", &["a", PROVISIONED]),
            spec("a", "second", &[]),
        ]);
        let names: Vec<&str> = kept.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "e"]);
        assert_eq!(kept[0].argv, ["first"]);
        assert_eq!(sup.status().len(), 2);
    }

    /// A node's status as its control socket sends it.
    fn node_status(tunnel_state: &str, known_nodes: usize, registry_cut: bool) -> String {
        format!(
            r#"{{"network":"2001:db8:42::/48","subnet":"2001:db8:42:2::/64",
            "address":"2001:db8:42:2::1","config_version":1,"cert_not_after":0,
            "registry_cut":{registry_cut},"cached_peers":1,"known_nodes":{known_nodes},
            "tunnels":[{{"peer":"2001:db8:42:1::/64","iface":"re6stnet0","state":"{tunnel_state}",
            "address":null,"protocol":null,"routes":1}}],"served":[],"reachable_at":"",
            "ipv4":"fixed","port_mappings":[],"ipv4_payload":null,"country":null,
            "same_country":[]}}"#
        )
    }

    #[tokio::test]
    async fn the_overlay_is_reached_with_a_route_to_the_registrys_node() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join(NODE_CTL_SOCKET);
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        // Not yet, then cut from the registry's node (peers only: the
        // trial's fallback, which the overlay line does not take), then in.
        let answers = [
            node_status("connecting", 0, false),
            node_status("established", 0, false),
            node_status("established", 2, true),
            node_status("established", 2, false),
        ];
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = served.clone();
        let node = tokio::spawn(async move {
            for answer in answers {
                let (mut stream, _) = listener.accept().await.unwrap();
                stream.write_all(answer.as_bytes()).await.unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let started = Instant::now();
        let why = tokio::time::timeout(Duration::from_secs(30), wait_for_overlay(&socket, started))
            .await
            .expect("overlay reached");
        assert_eq!(
            why,
            "an established tunnel and a route to the registry's node"
        );
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert!(started.elapsed() >= OVERLAY_CHECK_EVERY * 4);
        node.await.unwrap();
    }
}
