//! The core's rules as input → effect sequences (no namespaces, no
//! processes), and a property test that no sequence of inputs makes it
//! panic or grow its tables past their caps.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use re6st_proto::prefix::Prefix;

use super::hooks::MAX_SERVED_SERIALS;
use super::servers::{Renewed, SERVER_RESTART_EVERY};
use super::*;
use crate::connections::MAX_CONNECTIONS;
use crate::hook_event::Peer;
use crate::peer_cache::PeerCache;
use crate::peer_link::PeerLink;
use crate::tunnel::{Config, CountryRule, RoutingView};
use re6st_proto::netconfig::NetworkConfig;
use re6st_proto::peer::{Identity, PeerTable};
use re6st_testkit::{NodeId, Pki};

fn prefix(i: u32) -> Prefix {
    Prefix::new(u128::from(i), 16).unwrap()
}

/// A clock for the tests: seconds after a start.
struct Clock {
    start: Instant,
    /// The wall clock at the start (certificates are checked against it).
    wall: u64,
    secs: u64,
}

impl Clock {
    // The tests' one read of the clocks: an `Instant` can only be had
    // from it, and the test certificates are valid from today.
    #[allow(clippy::disallowed_methods)]
    fn new() -> Clock {
        // The certificates first: they are valid from the second they
        // were made, and the clock must not start before it.
        pki();
        Clock {
            start: Instant::now(),
            wall: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            secs: 0,
        }
    }

    fn now(&self) -> Now {
        Now {
            at: self.start + Duration::from_secs(self.secs),
            mono: 1_000_000 + self.secs as i64,
            wall: (self.wall + self.secs) as i64,
            wall_us: (self.wall + self.secs) * 1_000_000,
        }
    }

    fn advance(&mut self, secs: u64) -> Now {
        self.secs += secs;
        self.now()
    }
}

/// The tests' CA (network 2001:db8::/32) and our node's certificate
/// (prefix 9, [`OWN_SERIAL`]): RSA keys are slow to make, so once.
fn pki() -> &'static (Pki, NodeId) {
    &pki_and_node_5().0
}

/// The same, and node 5's certificate (the other end in the two-core
/// tests), made together: a certificate made after a test's clock started
/// is not yet valid at that clock.
fn pki_and_node_5() -> &'static ((Pki, NodeId), NodeId) {
    static PKI: std::sync::OnceLock<((Pki, NodeId), NodeId)> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let pki = Pki::new("2001:db8::/32");
        let me = pki.node(&prefix(9).to_subnet(), OWN_SERIAL as u32);
        let five = pki.node(&prefix(5).to_subnet(), 55);
        ((pki, me), five)
    })
}

/// Our peer link, with configuration `config`'s version.
fn link(config: &NetworkConfig) -> PeerLink {
    let (pki, me) = pki();
    PeerLink {
        me: Identity::new(pki.ca.clone(), me.cert.clone(), me.key.clone()).unwrap(),
        peers: PeerTable::default(),
        crl: config.crl.clone(),
        my_address: "198.18.0.9,1194,udp".into(),
        version: config.version.clone(),
        info: "test".into(),
        pending: Default::default(),
        random: |b| b.fill(7),
    }
}

/// Where node `i` listens for the peer protocol.
fn address(i: u32) -> SocketAddr {
    let ip = re6st_proto::prefix::node_address(&pki().0.network, &prefix(i)).unwrap();
    SocketAddr::new(ip.into(), re6st_proto::PEER_PORT)
}

/// The messages waiting for a session with node `i` (taken).
fn queued(c: &mut NodeCore, i: u32) -> Vec<Vec<u8>> {
    c.link
        .pending
        .remove(&prefix(i))
        .map(|q| q.messages)
        .unwrap_or_default()
        .to_vec()
}

/// The hello0 we send a node to set a session up (it has no certificate
/// of ours yet: a zero, then our certificate).
fn hello0(c: &NodeCore) -> Vec<u8> {
    [&[0u8; 4][..], &c.link.me.cert_der].concat()
}

fn core(clock: &Clock, crl: &[u64]) -> NodeCore {
    let manager = Manager::new(
        Config {
            me: prefix(9),
            // The registry's own node: never cut from it (the manager
            // would ask for configuration checks).
            registry: Some(prefix(9)),
            client_count: 2,
            tunnel_refresh: 60,
            timeout: 20,
            neighbours: BTreeSet::new(),
            disabled: BTreeSet::new(),
            countries: CountryRule::default(),
        },
        PeerCache::new(10),
        clock.now().mono,
        1,
    );
    let config = config(1, crl);
    let mut c = NodeCore::new(manager, link(&config), config, OWN_SERIAL, clock.now());
    // The manager's first dump request, answered (babeld is up).
    assert_eq!(effects(&mut c), [Effect::DumpBabel]);
    c.on_dump(Some(RoutingView::default()), &clock.now());
    c
}

/// Our certificate's serial.
const OWN_SERIAL: u64 = 1000;

/// A network configuration of version `version` revoking `crl`, whose
/// registry's node is prefix 0.
fn config(version: u64, crl: &[u64]) -> NetworkConfig {
    let mut c = NetworkConfig::new(re6st_proto::packint::pack(version).unwrap(), 10);
    c.crl = crl.iter().copied().collect();
    c.registry_prefix = Some(prefix(0));
    c
}

fn fetched(c: NetworkConfig) -> Input {
    Input::ConfigFetched(Ok(Box::new(c)))
}

fn effects(c: &mut NodeCore) -> Vec<Effect> {
    std::iter::from_fn(|| c.poll_effect()).collect()
}

/// The effects other than log lines.
fn acts(c: &mut NodeCore) -> Vec<Effect> {
    effects(c)
        .into_iter()
        .filter(|e| !matches!(e, Effect::Log { .. }))
        .collect()
}

fn logs(effects: &[Effect]) -> Vec<(u8, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Log { level, message } => Some((*level, message.clone())),
            _ => None,
        })
        .collect()
}

fn peer(i: u32, serial: u64) -> Peer {
    Peer {
        cn: prefix(i).to_subnet(),
        dev: "re6stnet-udp".into(),
        serial,
        ip: format!("198.18.0.{}", i % 250 + 1),
        port: 1000 + i as u16,
    }
}

fn hook(event: Event) -> Input {
    Input::Hook {
        event,
        reply_to: Some("/run/hook-client".into()),
    }
}

#[test]
fn a_revoked_serial_is_refused_and_a_good_one_served() {
    let clock = Clock::new();
    let mut c = core(&clock, &[5]);
    c.handle(hook(Event::ClientConnect(peer(1, 5))), clock.now());
    assert_eq!(
        effects(&mut c),
        [Effect::AnswerHook {
            to: "/run/hook-client".into(),
            accept: false
        }]
    );
    assert!(c.manager().served().is_empty());
    assert_eq!(c.served().serial_count(), 0);

    c.handle(hook(Event::ClientConnect(peer(2, 6))), clock.now());
    assert_eq!(
        effects(&mut c),
        [Effect::AnswerHook {
            to: "/run/hook-client".into(),
            accept: true
        }]
    );
    assert!(c.manager().served().contains(&prefix(2)));
    assert_eq!(c.served().serials(), [6].into());
    assert_eq!(c.served().links().using(&[6].into()).len(), 1);

    // A CRL naming it: the next connection with that serial is refused.
    c.handle(fetched(config(2, &[5, 6])), clock.now());
    effects(&mut c);
    c.handle(hook(Event::ClientConnect(peer(2, 6))), clock.now());
    assert!(matches!(
        effects(&mut c)[..],
        [Effect::AnswerHook { accept: false, .. }]
    ));

    // Disconnected: forgotten, so a later CRL cannot restart the servers
    // for it.
    c.handle(hook(Event::ClientDisconnect(peer(2, 6))), clock.now());
    assert!(effects(&mut c).is_empty());
    assert_eq!(c.served().serial_count(), 0);
    assert!(c.served().links().is_empty());
    assert!(c.manager().served().is_empty());
}

#[test]
fn route_up_tells_the_shell_how_the_peer_saw_us() {
    let clock = Clock::new();
    let mut c = core(&clock, &[]);
    c.handle(
        hook(Event::RouteUp {
            cn: prefix(3).to_subnet(),
            serial: 3,
            external_ip: "198.18.7.7".into(),
        }),
        clock.now(),
    );
    assert_eq!(acts(&mut c), [Effect::PeerSawUs("198.18.7.7".into())]);
}

#[test]
fn restarting_servers_forgets_who_was_on_them() {
    let clock = Clock::new();
    let mut c = core(&clock, &[]);
    for i in 1..4 {
        c.handle(hook(Event::ClientConnect(peer(i, i.into()))), clock.now());
    }
    assert_eq!(c.served().serial_count(), 3);
    c.handle(Input::ServersRestarted, clock.now());
    assert_eq!(c.served().serial_count(), 0);
    assert!(c.served().links().is_empty());
    assert!(c.manager().served().is_empty());
}

#[test]
fn babeld_exiting_in_a_row_is_restarted_after_a_growing_back_off() {
    let mut clock = Clock::new();
    let mut c = core(&clock, &[]);
    assert_eq!(c.poll_timeout(), None);
    let mut delays = Vec::new();
    for _ in 0..4 {
        c.handle(
            Input::BabeldExited {
                status: "signal 6".into(),
            },
            clock.now(),
        );
        let said = logs(&effects(&mut c));
        let at = c.poll_timeout().expect("a restart is planned");
        let delay = (at - clock.now().at).as_secs();
        assert_eq!(
            said,
            [(
                1,
                format!("babeld exited (signal 6); restarting in {delay}s")
            )]
        );
        // Not before its time.
        c.handle(Input::Timer, clock.advance(delay - 1));
        assert!(effects(&mut c).is_empty());
        c.handle(Input::Timer, clock.advance(1));
        assert_eq!(effects(&mut c), [Effect::StartBabeld]);
        assert_eq!(c.poll_timeout(), None);
        c.handle(Input::BabeldStarted { restarted: true }, clock.now());
        assert_eq!(logs(&effects(&mut c)), [(1, "babeld restarted".into())]);
        delays.push(delay);
        clock.advance(2);
    }
    assert_eq!(delays, [1, 2, 4, 8]);
    assert_eq!(c.babeld_restarts(), 4);
    // Starting it failed: tried again later, the delay still growing.
    c.handle(
        Input::BabeldExited {
            status: "exit 1".into(),
        },
        clock.now(),
    );
    effects(&mut c);
    c.handle(Input::Timer, clock.advance(16));
    assert_eq!(effects(&mut c), [Effect::StartBabeld]);
    c.handle(
        Input::BabeldStartFailed {
            error: "no such file".into(),
        },
        clock.now(),
    );
    assert_eq!(
        logs(&effects(&mut c)),
        [(0, "babeld: no such file; trying again in 32s".into())]
    );
    assert_eq!(
        c.poll_timeout(),
        Some(clock.now().at + Duration::from_secs(32))
    );
}

#[test]
fn one_dump_and_one_bootstrap_request_at_a_time() {
    let clock = Clock::new();
    let mut c = core(&clock, &[]);
    c.want_dump();
    c.want_dump();
    assert_eq!(effects(&mut c), [Effect::DumpBabel]);
    c.handle(Input::Dumped(None), clock.now());
    c.want_dump();
    assert_eq!(acts(&mut c), [Effect::DumpBabel]);

    c.want_bootstrap();
    c.want_bootstrap();
    assert_eq!(effects(&mut c), [Effect::AskBootstrap]);
    c.handle(Input::Bootstrap(Ok(None)), clock.now());
    let said = logs(&effects(&mut c));
    assert_eq!(said.len(), 1);
    assert!(said[0].1.contains("(1 in a row)"), "{said:?}");
    c.want_bootstrap();
    assert_eq!(effects(&mut c), [Effect::AskBootstrap]);
}

/// The effects of ticks from now to `secs` seconds later, one a second.
fn ticks(c: &mut NodeCore, clock: &mut Clock, secs: u64) -> Vec<(u64, Effect)> {
    let mut out = Vec::new();
    for _ in 0..secs {
        let now = clock.advance(1);
        c.handle(Input::Tick, now);
        out.extend(acts(c).into_iter().map(|e| (clock.secs, e)));
    }
    out
}

fn times(out: &[(u64, Effect)], what: &Effect) -> Vec<u64> {
    out.iter()
        .filter(|(_, e)| e == what)
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn a_newer_version_fetches_the_configuration_and_a_failure_retries_a_minute_later() {
    let mut clock = Clock::new();
    let mut c = core(&clock, &[]);
    assert!(times(&ticks(&mut c, &mut clock, 5), &Effect::FetchConfig).is_empty());
    c.handle(Input::NewerConfigSeen, clock.now());
    c.handle(Input::NewerConfigSeen, clock.now());
    // In a second, once, until the fetch ends.
    let out = ticks(&mut c, &mut clock, 10);
    assert_eq!(times(&out, &Effect::FetchConfig), [6]);
    c.handle(Input::ConfigFetched(Err("timed out".into())), clock.now());
    assert_eq!(
        logs(&effects(&mut c)),
        [(
            1,
            "new network configuration: timed out; retrying in 60s".into()
        )]
    );
    let out = ticks(&mut c, &mut clock, 70);
    assert_eq!(times(&out, &Effect::FetchConfig), [75]);
    c.handle(fetched(config(1, &[])), clock.now());
    assert_eq!(
        logs(&effects(&mut c)),
        [(3, "registry's network version 1 is not newer".into())]
    );
    assert!(times(&ticks(&mut c, &mut clock, 120), &Effect::FetchConfig).is_empty());
    // The manager asking for a check: at the next tick.
    c.config_check_asked();
    assert_eq!(
        times(&ticks(&mut c, &mut clock, 3), &Effect::FetchConfig),
        [clock.secs - 2]
    );
}

#[test]
fn renewal_is_checked_soon_after_start_then_hourly_and_tomorrow_after_a_refusal() {
    let mut clock = Clock::new();
    let mut c = core(&clock, &[]);
    let out = ticks(&mut c, &mut clock, 3 * 3600);
    // Unanswered checks are not repeated.
    assert_eq!(times(&out, &Effect::CheckRenewal), [10]);
    c.handle(
        Input::RenewalDone {
            retry_tomorrow: false,
        },
        clock.now(),
    );
    let out = ticks(&mut c, &mut clock, 3600);
    assert_eq!(times(&out, &Effect::CheckRenewal), [3 * 3600 + 10]);
    c.handle(
        Input::RenewalDone {
            retry_tomorrow: true,
        },
        clock.now(),
    );
    let refused_at = clock.secs;
    let out = ticks(&mut c, &mut clock, 86_400);
    assert_eq!(times(&out, &Effect::CheckRenewal), [refused_at + 86_400]);
    // Our certificate revoked: at the next tick.
    c.handle(
        Input::RenewalDone {
            retry_tomorrow: false,
        },
        clock.now(),
    );
    c.handle(Input::OwnCertRevoked, clock.now());
    assert_eq!(
        times(&ticks(&mut c, &mut clock, 1), &Effect::CheckRenewal),
        [clock.secs]
    );
}

#[test]
fn a_revocation_seen_during_a_renewal_check_is_checked_again_once_it_is_done() {
    let mut clock = Clock::new();
    let mut c = core(&clock, &[]);
    // The check soon after start, under way.
    assert_eq!(
        times(&ticks(&mut c, &mut clock, 10), &Effect::CheckRenewal),
        [10]
    );
    // Our certificate revoked meanwhile: that check may have looked
    // before, so another follows it at once.
    c.handle(Input::OwnCertRevoked, clock.now());
    assert!(!effects(&mut c).contains(&Effect::CheckRenewal));
    c.handle(
        Input::RenewalDone {
            retry_tomorrow: false,
        },
        clock.now(),
    );
    assert!(effects(&mut c).contains(&Effect::CheckRenewal));
    // Once: the next one an hour later.
    c.handle(
        Input::RenewalDone {
            retry_tomorrow: false,
        },
        clock.now(),
    );
    assert_eq!(
        times(&ticks(&mut c, &mut clock, 3601), &Effect::CheckRenewal),
        [3610]
    );
}

#[test]
fn version_kernel_check_and_cache_save_periods() {
    let mut clock = Clock::new();
    let mut c = core(&clock, &[]);
    // A peer on our server, to announce our version to.
    c.handle(hook(Event::ClientConnect(peer(4, 4))), clock.now());
    let version = link::version_message(&c.link.version);
    let mut announced = Vec::new();
    let mut out = Vec::new();
    for _ in 0..125 {
        out.extend(ticks(&mut c, &mut clock, 1));
        if queued(&mut c, 4).contains(&version) {
            announced.push(clock.secs);
        }
    }
    assert_eq!(announced, [30, 60, 90, 120]);
    // Every 10 s, but not while one is under way.
    assert_eq!(times(&out, &Effect::CompareKernelRoutes), [1]);
    assert_eq!(times(&out, &Effect::SaveCache), [61, 122]);
    c.handle(Input::KernelRoutesCompared, clock.now());
    let out = ticks(&mut c, &mut clock, 30);
    assert_eq!(times(&out, &Effect::CompareKernelRoutes), [131]);
    // A newer configuration is announced at once, and the next periodic
    // announcement is a whole period after it.
    c.handle(fetched(config(2, &[])), clock.now());
    assert!(queued(&mut c, 4).contains(&link::version_message(&config(2, &[]).version)));
    let mut announced = Vec::new();
    for _ in 0..40 {
        ticks(&mut c, &mut clock, 1);
        if !queued(&mut c, 4).is_empty() {
            announced.push(clock.secs);
        }
    }
    assert_eq!(announced, [185]);
    // A failed save is said, and the first success after it.
    c.handle(Input::CacheSaved(Err("disk full".into())), clock.now());
    c.handle(Input::CacheSaved(Err("disk full".into())), clock.now());
    c.handle(Input::CacheSaved(Ok(())), clock.now());
    c.handle(Input::CacheSaved(Ok(())), clock.now());
    let said: Vec<String> = logs(&effects(&mut c)).into_iter().map(|l| l.1).collect();
    assert_eq!(
        said,
        [
            "cannot save the state: disk full (the previous file is kept)",
            "cannot save the state: disk full (the previous file is kept)",
            "peer cache saved again",
        ]
    );
}

/// The seconds at which the core compares the kernel's routes with
/// babeld's, each comparison ending at once.
fn kernel_checks(c: &mut NodeCore, clock: &mut Clock, secs: u64) -> Vec<u64> {
    let mut at = Vec::new();
    for _ in 0..secs {
        if ticks(c, clock, 1)
            .iter()
            .any(|(_, e)| *e == Effect::CompareKernelRoutes)
        {
            at.push(clock.secs);
            c.handle(Input::KernelRoutesCompared, clock.now());
        }
    }
    at
}

#[test]
fn kernel_checks_come_sooner_after_a_peer_or_a_neighbour_goes() {
    let mut clock = Clock::new();
    let mut c = core(&clock, &[]);
    c.handle(hook(Event::ClientConnect(peer(4, 4))), clock.now());
    assert_eq!(kernel_checks(&mut c, &mut clock, 30), [1, 11, 21]);
    // A peer left our server: every 2 s for 20 s, then every 10 s again.
    c.handle(hook(Event::ClientDisconnect(peer(4, 4))), clock.now());
    assert_eq!(
        kernel_checks(&mut c, &mut clock, 40),
        [31, 33, 35, 37, 39, 41, 43, 45, 47, 49, 59, 69]
    );
    // babeld's neighbours changed; another change extends the window.
    c.handle(Input::RoutingChanged, clock.now());
    assert_eq!(kernel_checks(&mut c, &mut clock, 5), [71, 73, 75]);
    c.handle(Input::RoutingChanged, clock.now());
    assert_eq!(
        kernel_checks(&mut c, &mut clock, 35),
        [77, 79, 81, 83, 85, 87, 89, 91, 93, 95, 105]
    );
    // A client tunnel's OpenVPN exited.
    c.handle(Input::TunnelExited(prefix(6)), clock.now());
    assert_eq!(kernel_checks(&mut c, &mut clock, 6), [111, 113, 115]);
}

fn any_peer() -> impl Strategy<Value = Peer> {
    (any::<u16>(), any::<u64>(), any::<u8>(), any::<u16>()).prop_map(|(p, serial, ip, port)| Peer {
        cn: format!("{p}/16"),
        dev: format!("re6stnet-{}", ip % 3),
        serial: serial % 64,
        ip: format!("198.18.0.{ip}"),
        port,
    })
}

fn any_input() -> impl Strategy<Value = (u8, Input)> {
    let input = prop_oneof![
        8 => any_peer().prop_map(|p| hook(Event::ClientConnect(p))),
        2 => any_peer().prop_map(|p| hook(Event::ClientDisconnect(p))),
        1 => (any::<u16>(), any::<u64>(), ".{0,8}").prop_map(|(p, serial, ip)| hook(Event::RouteUp {
            cn: format!("{p}/16"),
            serial,
            external_ip: ip,
        })),
        1 => Just(Input::Tick),
        1 => Just(Input::Timer),
        1 => ".{0,8}".prop_map(|status| Input::BabeldExited { status }),
        1 => any::<bool>().prop_map(|restarted| Input::BabeldStarted { restarted }),
        1 => ".{0,8}".prop_map(|error| Input::BabeldStartFailed { error }),
        1 => Just(Input::Dumped(None)),
        1 => "re6stnet[0-3]".prop_map(Input::NeighbourUsable),
        1 => proptest::collection::vec("re6stnet[0-3]", 0..4).prop_map(Input::ExchangeTaps),
        1 => "re6stnet[0-3]".prop_map(Input::InterfaceTakenBack),
        1 => prop_oneof![
            Just(Ok(None)),
            ".{0,8}".prop_map(Err),
            (".{0,12}", ".{0,12}").prop_map(|(p, a)| Ok(Some((p, a)))),
        ]
        .prop_map(Input::Bootstrap),
        1 => Just(Input::NewerConfigSeen),
        1 => ".{0,8}".prop_map(|e| Input::ConfigFetched(Err(e))),
        1 => (0u64..6, proptest::collection::vec(0u64..64, 0..8), any::<u8>()).prop_map(
            |(version, crl, hello)| {
                let mut c = config(version, &crl);
                c.hello = u32::from(hello % 8);
                fetched(c)
            }
        ),
        1 => any::<bool>().prop_map(|retry_tomorrow| Input::RenewalDone { retry_tomorrow }),
        1 => Just(Input::OwnCertRevoked),
        1 => Just(Input::KernelRoutesCompared),
        1 => proptest::option::of(".{0,8}")
            .prop_map(|e| Input::CacheSaved(e.map_or(Ok(()), Err))),
        1 => Just(Input::ServersRestarted),
        1 => proptest::option::of(any::<u64>()).prop_map(|serial| Input::NewCertificate { serial }),
        1 => Just(Input::RoutingChanged),
        1 => (".{0,8}", ".{0,8}").prop_map(|(iface, status)| Input::ServerExited { iface, status }),
        1 => any::<u16>().prop_map(|p| Input::TunnelExited(prefix(p.into()))),
        1 => ".{0,8}".prop_map(Input::DropFailed),
        1 => (any::<[bool; 5]>(), proptest::collection::btree_set(0u64..64, 0..4)).prop_map(
            |(b, drop_served)| Input::NewConfig(Plan {
                restart_babel: b[0],
                restart_servers: b[1],
                reexec: b[2],
                renew: b[3],
                too_old: b[4],
                revoked: drop_served.clone(),
                drop_served,
            })
        ),
        1 => prop_oneof![Just(Renewed::Nothing), Just(Renewed::Cert), Just(Renewed::Ca)]
            .prop_map(Input::Renewed),
        1 => (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(p, data)| Input::Datagram { from: address(p.into()), data }),
        1 => (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(port, data)| Input::Relay { from: SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port)), data }),
        1 => ".{0,12}".prop_map(Input::OurAddress),
        1 => proptest::collection::vec(".{0,8}", 0..4).prop_map(Input::BabelInterfaces),
        1 => ".{0,8}".prop_map(Input::BabelDefaults),
        1 => (any::<u16>(), ".{0,8}").prop_map(|(p, error)| Input::TunnelStartFailed { prefix: prefix(p.into()), error }),
        1 => any::<u16>().prop_map(|port| Input::RelayRefused { from: SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port)) }),
    ];
    // Seconds before the input (mostly none: bursts of hook events).
    (prop_oneof![6 => Just(0u8), 1 => any::<u8>()], input)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn no_input_sequence_panics_or_grows_a_table_past_its_cap(
        inputs in proptest::collection::vec(any_input(), 0..3000),
        // Then a flood of peers connecting, more than the tables hold.
        flood in proptest::collection::vec(any_peer(), MAX_SERVED_SERIALS + 100..MAX_SERVED_SERIALS + 300),
        drain_every in 1usize..6000,
    ) {
        let mut clock = Clock::new();
        let mut c = core(&clock, &[3, 4]);
        let flood = flood.into_iter().map(|p| (0, hook(Event::ClientConnect(p))));
        for (i, (wait, input)) in inputs.into_iter().chain(flood).enumerate() {
            let now = clock.advance(u64::from(wait));
            c.handle(input, now);
            prop_assert!(c.served().serial_count() <= MAX_SERVED_SERIALS);
            prop_assert!(c.served().links().len() <= MAX_CONNECTIONS);
            prop_assert!(c.effects.len() <= MAX_EFFECTS);
            if i % drain_every == 0 {
                effects(&mut c);
            }
            if let Some(t) = c.poll_timeout() {
                prop_assert!(t <= now.at + Duration::from_secs(60));
            }
        }
    }
}

#[test]
fn the_served_tables_stop_at_their_caps() {
    let clock = Clock::new();
    let mut c = core(&clock, &[]);
    for i in 0..(MAX_SERVED_SERIALS as u32 + 100) {
        c.handle(hook(Event::ClientConnect(peer(i + 1, 7))), clock.now());
        effects(&mut c);
    }
    assert_eq!(c.served().serial_count(), MAX_SERVED_SERIALS);
    // A peer already known is updated, not refused a place.
    c.handle(hook(Event::ClientConnect(peer(1, 8))), clock.now());
    assert!(c.served().serials().contains(&8));
    assert_eq!(c.served().serial_count(), MAX_SERVED_SERIALS);
}

#[test]
fn an_exited_server_is_looked_for_at_every_tick_but_within_10s_of_a_restart() {
    let mut clock = Clock::new();
    let mut c = core(&clock, &[]);
    let out = ticks(&mut c, &mut clock, 12);
    let every = SERVER_RESTART_EVERY.as_secs();
    // From the node's start: a server killed then is back at once.
    assert_eq!(
        times(&out, &Effect::CheckServers),
        (1..=12).collect::<Vec<u64>>()
    );
    // Two servers found exited: one restart.
    for iface in ["re6stnet-udp", "re6stnet-tcp"] {
        c.handle(
            Input::ServerExited {
                iface: iface.into(),
                status: "signal: 9 (SIGKILL)".into(),
            },
            clock.now(),
        );
    }
    let out = effects(&mut c);
    assert_eq!(
        logs(&out),
        [
            (
                1,
                "OpenVPN server re6stnet-udp exited (signal: 9 (SIGKILL))".into()
            ),
            (
                1,
                "OpenVPN server re6stnet-tcp exited (signal: 9 (SIGKILL))".into()
            ),
        ]
    );
    assert_eq!(
        out.iter().filter(|e| **e == Effect::RestartServers).count(),
        1
    );
    assert_eq!(c.openvpn_restarts(), 2);
    c.handle(hook(Event::ClientConnect(peer(1, 1))), clock.now());
    c.handle(Input::ServersRestarted, clock.now());
    assert!(c.manager().served().is_empty());
    let restarted = clock.secs;
    let out = ticks(&mut c, &mut clock, 12);
    assert_eq!(
        times(&out, &Effect::CheckServers),
        [restarted + every, restarted + 11, restarted + 12]
    );
}

#[test]
fn a_revoked_peer_not_dropped_alone_restarts_the_servers_at_the_next_tick() {
    let mut clock = Clock::new();
    let mut c = core(&clock, &[]);
    c.handle(
        Input::DropFailed("re6stnet-udp: no socket".into()),
        clock.now(),
    );
    assert_eq!(
        logs(&effects(&mut c)),
        [(
            1,
            "could not drop a revoked peer: re6stnet-udp: no socket; restarting the \
             OpenVPN servers"
                .into()
        )]
    );
    assert_eq!(
        times(&ticks(&mut c, &mut clock, 2), &Effect::RestartServers),
        [1]
    );
}

fn plan() -> Plan {
    Plan::default()
}

#[test]
fn a_new_configuration_restarts_what_changed_in_order_and_a_reexec_alone() {
    let mut clock = Clock::new();
    let mut c = core(&clock, &[]);
    c.handle(
        Input::NewConfig(Plan {
            restart_babel: true,
            restart_servers: true,
            drop_served: [4].into(),
            ..plan()
        }),
        clock.now(),
    );
    assert_eq!(
        acts(&mut c),
        [
            Effect::RestartBabeld,
            Effect::DropServed([4].into()),
            Effect::RestartServers
        ]
    );
    c.handle(Input::ServersRestarted, clock.now());
    c.handle(
        Input::NewConfig(Plan {
            reexec: true,
            restart_babel: true,
            too_old: true,
            ..plan()
        }),
        clock.now(),
    );
    let out = effects(&mut c);
    assert_eq!(out.last(), Some(&Effect::Reexec));
    assert_eq!(logs(&out).len(), 2, "{out:?}");
    assert!(!out.contains(&Effect::RestartBabeld));
    // Our own certificate revoked: a renewal check at the next tick.
    c.handle(
        Input::NewConfig(Plan {
            renew: true,
            ..plan()
        }),
        clock.now(),
    );
    ticks(&mut c, &mut clock, 20);
    c.handle(
        Input::RenewalDone {
            retry_tomorrow: false,
        },
        clock.now(),
    );
    c.handle(
        Input::NewConfig(Plan {
            renew: true,
            ..plan()
        }),
        clock.now(),
    );
    assert_eq!(
        times(&ticks(&mut c, &mut clock, 1), &Effect::CheckRenewal),
        [clock.secs]
    );
}

#[test]
fn a_renewed_certificate_reconnects_the_tunnels_and_a_new_ca_restarts_the_node() {
    let clock = Clock::new();
    let mut c = core(&clock, &[]);
    c.handle(Input::Renewed(Renewed::Nothing), clock.now());
    assert!(effects(&mut c).is_empty());
    c.handle(Input::Renewed(Renewed::Cert), clock.now());
    assert_eq!(acts(&mut c), [Effect::UseNewCert, Effect::RestartServers]);
    c.handle(Input::Renewed(Renewed::Ca), clock.now());
    assert_eq!(acts(&mut c), [Effect::Reexec]);
}

#[test]
fn a_peer_with_an_older_version_gets_ours_and_a_newer_one_makes_us_fetch() {
    let mut clock = Clock::new();
    let mut c = core(&clock, &[]);
    // Ours is version 1 (unsigned: only peers' versions are checked).
    // Theirs come in session messages, signed by the CA (or not).
    let ca_key = &pki().0.ca_key;
    let version = |c: &mut NodeCore, blob: Vec<u8>, now: Now| {
        let msg = link::version_message(&blob);
        c.session_message(address(5), prefix(5), &msg, now);
    };
    version(
        &mut c,
        re6st_proto::crypto::sign_version(ca_key, 0).unwrap(),
        clock.now(),
    );
    // Ours goes back, through a session with the peer (a hello0 first).
    assert!(matches!(&acts(&mut c)[..], [Effect::SendDatagram { to, .. }] if *to == address(5)));
    assert_eq!(queued(&mut c, 5), [link::version_message(&c.link.version)]);
    // Signed by another key: said, nothing done.
    version(
        &mut c,
        re6st_proto::crypto::sign_version(&pki().1.key, 8).unwrap(),
        clock.now(),
    );
    assert_eq!(
        effects(&mut c),
        [Effect::Log {
            level: 2,
            message: format!("bad network version from {}", prefix(5).to_subnet())
        }]
    );
    assert!(times(&ticks(&mut c, &mut clock, 3), &Effect::FetchConfig).is_empty());
    version(
        &mut c,
        re6st_proto::crypto::sign_version(ca_key, 8).unwrap(),
        clock.now(),
    );
    assert!(acts(&mut c).is_empty());
    assert_eq!(
        times(&ticks(&mut c, &mut clock, 3), &Effect::FetchConfig),
        [clock.secs - 2]
    );
}

#[test]
fn only_the_registrys_node_is_told_our_tunnels() {
    let clock = Clock::new();
    let mut c = core(&clock, &[]);
    c.handle(hook(Event::ClientConnect(peer(4, 4))), clock.now());
    effects(&mut c);
    // `topology` (code 5) asked in a session message, first byte 0x05.
    let topology = [re6st_proto::message::Code::Topology as u8];
    c.session_message(address(5), prefix(5), &topology, clock.now());
    assert!(acts(&mut c).is_empty());
    assert!(queued(&mut c, 5).is_empty());
    c.session_message(address(0), prefix(0), &topology, clock.now());
    let text = format!("0 {}", prefix(4).to_subnet());
    assert!(matches!(&acts(&mut c)[..], [Effect::SendDatagram { to, .. }] if *to == address(0)));
    assert_eq!(
        queued(&mut c, 0),
        [[&topology[..], text.as_bytes()].concat()]
    );
}

#[test]
fn refused_relay_datagrams_are_said_at_powers_of_two() {
    let clock = Clock::new();
    let mut c = core(&clock, &[]);
    let from: SocketAddr = "[::1]:4000".parse().unwrap();
    let mut said = Vec::new();
    for i in 1..=20u64 {
        c.handle(Input::RelayRefused { from }, clock.now());
        if !logs(&effects(&mut c)).is_empty() {
            said.push(i);
        }
    }
    assert_eq!(said, [1, 2, 4, 8, 16]);
}

#[test]
fn a_tunnel_on_a_tap_babeld_does_not_know_adds_it_first() {
    use crate::tunnel::Action;
    let clock = Clock::new();
    let mut c = core(&clock, &[]);
    c.handle(Input::BabelDefaults("hello-interval 4".into()), clock.now());
    c.handle(
        Input::BabelInterfaces(vec!["re6stnet1".into(), "re6stnet-udp".into()]),
        clock.now(),
    );
    let address: re6st_proto::address::Address =
        re6st_proto::address::parse_list("198.18.0.5,1194,udp")
            .addresses
            .remove(0);
    let open = |iface: &str| Action::Open {
        prefix: prefix(5),
        iface: iface.into(),
        address: address.clone(),
    };
    c.on_action(open("re6stnet1"));
    let start = |iface: &str| Effect::StartTunnel {
        prefix: prefix(5),
        iface: iface.into(),
        address: address.clone(),
    };
    assert_eq!(acts(&mut c), [start("re6stnet1")]);
    c.on_action(open("re6stnet2"));
    assert_eq!(
        acts(&mut c),
        [
            Effect::TellBabel(vec!["interface re6stnet2 hello-interval 4".into()]),
            start("re6stnet2")
        ]
    );
    assert!(c.babel_interfaces().known().contains("re6stnet2"));
    // Told once: a restarted babeld gets it from its command line.
    c.on_action(open("re6stnet2"));
    assert_eq!(acts(&mut c), [start("re6stnet2")]);
    c.handle(
        Input::TunnelStartFailed {
            prefix: prefix(5),
            error: "No such file".into(),
        },
        clock.now(),
    );
    assert!(logs(&effects(&mut c)).contains(&(1, "openvpn: No such file".into())));
}

#[test]
fn a_drained_tunnel_is_held_and_silenced_then_speaks_again_and_babeld_is_never_reconfigured() {
    use crate::tunnel::Action;
    let clock = Clock::new();
    let mut c = core(&clock, &[]);
    c.handle(Input::BabelDefaults("hello-interval 4".into()), clock.now());
    c.on_action(Action::Drain {
        iface: "re6stnet1".into(),
        drain: true,
    });
    let out = effects(&mut c);
    assert_eq!(logs(&out), [(2, "draining re6stnet1".into())]);
    assert_eq!(
        out[1..],
        [
            Effect::HoldRoutes {
                iface: "re6stnet1".into(),
                hold: true
            },
            Effect::MuteBabel {
                iface: "re6stnet1".into(),
                mute: true
            },
        ]
    );
    // Its tunnel closed: the copies go and the tap speaks again; babeld
    // is told nothing (no `flush interface`: unsafe in babeld 1.12).
    c.on_action(Action::Drain {
        iface: "re6stnet1".into(),
        drain: false,
    });
    assert_eq!(
        effects(&mut c),
        [
            Effect::HoldRoutes {
                iface: "re6stnet1".into(),
                hold: false
            },
            Effect::MuteBabel {
                iface: "re6stnet1".into(),
                mute: false
            },
        ]
    );
    c.on_action(Action::SendKill {
        prefix: prefix(5),
        code: 2,
    });
    assert_eq!(
        effects(&mut c),
        [
            Effect::Log {
                level: 2,
                message: format!("tunnel with {}: asking to close", prefix(5).to_subnet())
            },
            Effect::SendDatagram {
                to: address(5),
                data: hello0(&c),
            }
        ]
    );
    assert_eq!(queued(&mut c, 5), [vec![2]]);
}

#[test]
fn a_newer_configuration_is_used_announced_and_restarts_what_it_changes() {
    let clock = Clock::new();
    let mut c = core(&clock, &[]);
    c.handle(hook(Event::ClientConnect(peer(4, 44))), clock.now());
    effects(&mut c);
    let mut new = config(2, &[44, OWN_SERIAL]);
    new.hello += 1;
    new.max_clients += 1;
    c.handle(fetched(new.clone()), clock.now());
    let out = effects(&mut c);
    let said = logs(&out);
    assert_eq!(said.len(), 2, "{out:?}");
    assert!(
        said[0]
            .1
            .starts_with("network configuration version 2: Plan {"),
        "{said:?}"
    );
    assert_eq!(
        said[1].1,
        "network configuration changed: restarting babeld"
    );
    let done: Vec<Effect> = out
        .into_iter()
        .filter(|e| !matches!(e, Effect::Log { .. }))
        .collect();
    assert_eq!(
        done,
        [
            Effect::UseConfig(Box::new(new.clone())),
            // The new version, to the peer on our server (a hello0 first).
            Effect::SendDatagram {
                to: address(4),
                data: hello0(&c),
            },
            // Our own serial is in the new CRL: renewed at once.
            Effect::CheckRenewal,
            Effect::RestartBabeld,
            Effect::DropServed([44].into()),
            Effect::RestartServers,
        ]
    );
    assert_eq!(c.config(), &new);
    // The revoked peer connecting again is refused.
    c.handle(hook(Event::ClientConnect(peer(4, 44))), clock.now());
    assert!(matches!(
        effects(&mut c)[..],
        [Effect::AnswerHook { accept: false, .. }]
    ));
    // The same version again changes nothing.
    c.handle(fetched(config(2, &[])), clock.now());
    assert!(acts(&mut c).is_empty());
    assert_eq!(c.config(), &new);
}

#[test]
fn a_babeld_that_stops_answering_is_restarted_at_most_once_a_minute() {
    let clock = Clock::new();
    let mut c = core(&clock, &[]);
    let mut now = clock.now();
    c.handle(Input::BabeldStarted { restarted: false }, now);
    c.handle(Input::Dumped(Some(RoutingView::default())), now);
    effects(&mut c);
    let restarts = |c: &mut NodeCore| {
        acts(c)
            .iter()
            .filter(|e| **e == Effect::RestartBabeld)
            .count()
    };
    // Two unanswered, one answered: nothing.
    for answered in [false, false, true, false, false] {
        let view = answered.then(RoutingView::default);
        c.handle(Input::Dumped(view), now);
        assert_eq!(restarts(&mut c), 0);
    }
    // The third in a row restarts it.
    c.handle(Input::Dumped(None), now);
    assert_eq!(restarts(&mut c), 1);
    // Not again within a minute, however many.
    for _ in 0..10 {
        now.at += Duration::from_secs(5);
        c.handle(Input::Dumped(None), now);
        assert_eq!(restarts(&mut c), 0);
    }
    now.at += Duration::from_secs(10);
    c.handle(Input::Dumped(None), now);
    assert_eq!(restarts(&mut c), 1);
}

#[test]
fn a_dump_that_fails_right_after_babeld_starts_is_tried_again_at_once() {
    let clock = Clock::new();
    let mut c = core(&clock, &[]);
    // A first dump that failed (babeld's socket not there yet): the next
    // one comes 200 ms later, not on the next tick.
    c.handle(Input::BabeldStarted { restarted: false }, clock.now());
    c.handle(Input::Dumped(None), clock.now());
    let retry = c.poll_timeout().expect("a dump planned");
    assert_eq!(retry, clock.now().at + Duration::from_millis(200));
    let mut now = clock.now();
    now.at = retry;
    c.handle(Input::Timer, now);
    assert_eq!(acts(&mut c), [Effect::DumpBabel]);
    // Only so many times: a babeld that never answers is asked on the
    // tunnel manager's own schedule.
    for _ in 1..20 {
        c.handle(Input::Dumped(None), now);
        now.at = c.poll_timeout().expect("a dump planned");
        c.handle(Input::Timer, now);
        assert_eq!(acts(&mut c), [Effect::DumpBabel]);
    }
    c.handle(Input::Dumped(None), now);
    assert_eq!(c.poll_timeout(), None);
    // babeld restarted: early failures are tried again at once again.
    c.handle(Input::BabeldStarted { restarted: true }, now);
    c.handle(Input::Dumped(None), now);
    assert!(c.poll_timeout().is_some());
    // A dump that worked ends that.
    c.handle(Input::BabeldStarted { restarted: true }, now);
    c.handle(Input::Dumped(Some(RoutingView::default())), now);
    effects(&mut c);
    c.handle(Input::Dumped(None), now);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_usable_neighbour_after_a_tunnel_start_or_an_interface_taken_back_makes_babeld_exchange_tables()
{
    let clock = Clock::new();
    let mut c = core(&clock, &[]);
    acts(&mut c);
    let usable = |c: &mut NodeCore, iface: &str| {
        c.handle(Input::NeighbourUsable(iface.into()), clock.now());
        acts(c)
    };
    let start = |c: &mut NodeCore| {
        c.on_action(crate::tunnel::Action::Open {
            prefix: prefix(3),
            iface: "re6stnet1".into(),
            address: re6st_proto::address::parse_list("198.18.0.3,1194,tcp")
                .addresses
                .remove(0),
        });
        acts(c);
    };
    // Before the shell named the taps: nothing.
    start(&mut c);
    assert_eq!(usable(&mut c, "re6stnet1"), []);
    c.handle(
        Input::ExchangeTaps(vec![
            "re6stnet-tcp".into(),
            "re6stnet1".into(),
            "re6stnet2".into(),
        ]),
        clock.now(),
    );
    // Nothing armed since: nothing (e.g. a drain re-created babeld's
    // interface, which meets its neighbour again).
    assert_eq!(usable(&mut c, "re6stnet1"), []);
    let [a, b] = babel::EXCHANGE_ADDRESSES;
    let exchange = |iface: &str, remove, add| Effect::ExchangeTables {
        iface: iface.into(),
        remove,
        add,
    };
    start(&mut c);
    assert_eq!(
        usable(&mut c, "re6stnet1"),
        [exchange("re6stnet1", None, a)]
    );
    // Once per tunnel.
    assert_eq!(usable(&mut c, "re6stnet1"), []);
    // The next tunnel: the other address, so that babeld sees a change.
    start(&mut c);
    assert_eq!(
        usable(&mut c, "re6stnet1"),
        [exchange("re6stnet1", Some(a), b)]
    );
    // A server's tap taken back (our servers restarted): its clients'
    // routes are exchanged again.
    assert_eq!(usable(&mut c, "re6stnet-tcp"), []);
    c.handle(
        Input::InterfaceTakenBack("re6stnet-tcp".into()),
        clock.now(),
    );
    assert_eq!(
        usable(&mut c, "re6stnet-tcp"),
        [exchange("re6stnet-tcp", None, a)]
    );
    // babeld restarted: every tap, once each.
    c.handle(Input::BabeldStarted { restarted: true }, clock.now());
    acts(&mut c);
    assert_eq!(
        usable(&mut c, "re6stnet1"),
        [exchange("re6stnet1", Some(b), a)]
    );
    assert_eq!(
        usable(&mut c, "re6stnet2"),
        [exchange("re6stnet2", None, a)]
    );
    assert_eq!(
        usable(&mut c, "re6stnet-tcp"),
        [exchange("re6stnet-tcp", Some(a), b)]
    );
    assert_eq!(usable(&mut c, "re6stnet2"), []);
    // Interfaces not named (LAN): never.
    c.handle(Input::InterfaceTakenBack("eth0".into()), clock.now());
    assert_eq!(usable(&mut c, "eth0"), []);
}

#[test]
fn a_drain_given_up_keeps_its_copies_until_a_table_exchange_brought_the_routes_back() {
    let mut clock = Clock::new();
    let mut c = core(&clock, &[]);
    c.handle(
        Input::ExchangeTaps(vec!["re6stnet1".into(), "re6stnet2".into()]),
        clock.now(),
    );
    // Two peers known: a tunnel to each, established.
    let (p1, p2) = (prefix(1), prefix(2));
    let view = |routed: usize| {
        let mut v = RoutingView::default();
        v.known.extend([p1, p2]);
        for (i, p) in [(1, p1), (2, p2)] {
            let iface = format!("re6stnet{i}");
            v.neighbours.insert(p);
            v.links.insert((iface.clone(), p), routed);
            v.routes_per_iface.insert(iface, routed);
        }
        v
    };
    // (The registry's bootstrap answers: a node alone ignores babel.)
    let mut ifaces = BTreeMap::new();
    for (i, p) in [(1u64, p1), (2, p2)] {
        c.handle(
            Input::Bootstrap(Ok(Some((p.to_string(), format!("198.18.0.{i},1194,tcp"))))),
            clock.now(),
        );
        for e in acts(&mut c) {
            if let Effect::StartTunnel { prefix, iface, .. } = e {
                ifaces.insert(prefix, iface);
            }
        }
        c.handle(
            hook(Event::RouteUp {
                cn: p.to_subnet(),
                serial: i,
                external_ip: "198.18.9.9".into(),
            }),
            clock.now(),
        );
    }
    assert_eq!(ifaces.len(), 2, "a tunnel to each: {ifaces:?}");
    acts(&mut c);
    // A second passes: dumps are answered with the same view (routes
    // through both tunnels), the periodic work left out, the rest returned.
    let mut second = |c: &mut NodeCore| -> Vec<Effect> {
        let now = clock.advance(1);
        c.handle(Input::Tick, now);
        let mut out = Vec::new();
        for e in effects(c) {
            match e {
                Effect::DumpBabel => c.handle(Input::Dumped(Some(view(1))), now),
                Effect::CheckServers
                | Effect::CompareKernelRoutes
                | Effect::SendDatagram { .. } => {}
                e => out.push(e),
            }
        }
        out
    };
    // babeld 1.12 cannot re-create an interface with neighbours safely:
    // nothing here ever asks it to.
    let flushes = |out: &[Effect]| {
        out.iter()
            .filter(
                |e| matches!(e, Effect::TellBabel(l) if l.iter().any(|l| l.starts_with("flush"))),
            )
            .count()
    };
    // The refresh drains one of them; its routes never move away.
    let iface = (0..70)
        .find_map(|_| {
            let out = second(&mut c);
            assert_eq!(flushes(&out), 0, "{out:?}");
            out.into_iter().find_map(|e| match e {
                Effect::HoldRoutes { iface, hold: true } => Some(iface),
                _ => None,
            })
        })
        .expect("a drain");
    // Given up after twice the timeout: babel speaks there again, the
    // copies stay, and the next usable neighbour there exchanges tables.
    let mut undone = Vec::new();
    for _ in 0..45 {
        undone.extend(second(&mut c));
        if undone
            .iter()
            .any(|e| matches!(e, Effect::MuteBabel { mute: false, .. }))
        {
            break;
        }
    }
    assert!(
        !undone
            .iter()
            .any(|e| matches!(e, Effect::HoldRoutes { .. })),
        "the copies stay: {undone:?}"
    );
    assert_eq!(flushes(&undone), 0, "{undone:?}");
    assert!(
        logs(&undone).contains(&(2, format!("{iface}: drain given up"))),
        "{undone:?}"
    );
    assert_eq!(
        c.poll_timeout(),
        None,
        "no release planned before the exchange"
    );
    c.handle(Input::NeighbourUsable(iface.clone()), clock.now());
    assert!(matches!(
        &acts(&mut c)[..],
        [Effect::ExchangeTables { iface: i, .. }] if *i == iface
    ));
    let release = c.poll_timeout().expect("the copies' release planned");
    assert_eq!(release, clock.now().at + Duration::from_secs(3));
    c.handle(Input::Timer, clock.advance(2));
    assert_eq!(acts(&mut c), []);
    c.handle(Input::Timer, clock.advance(1));
    assert_eq!(
        acts(&mut c),
        [Effect::HoldRoutes {
            iface: iface.clone(),
            hold: false
        }]
    );
    assert_eq!(c.poll_timeout(), None);
}

/// The registry's relay, from its local socket: a request for us is
/// answered to that socket, one for another node forwarded to it.
#[test]
fn the_registrys_relay_is_answered_for_us_and_forwarded_for_others() {
    use re6st_proto::message::{Code, FORWARD};
    use re6st_proto::relay;
    let mut clock = Clock::new();
    let mut c = core(&clock, &[]);
    let registry: SocketAddr = "[::1]:4000".parse().unwrap();
    let ask = |p: u32, code: Code| Input::Relay {
        from: registry,
        data: relay::encode(&prefix(p), code as u8, b""),
    };
    let answer = |data: &[u8]| Effect::SendDatagram {
        to: registry,
        data: data.to_vec(),
    };
    c.handle(ask(9, Code::Address), clock.now());
    assert_eq!(
        acts(&mut c),
        [answer(&relay::encode(
            &prefix(9),
            Code::Address as u8,
            b"198.18.0.9,1194,udp"
        ))]
    );
    c.handle(ask(9, Code::Topology), clock.now());
    assert_eq!(
        acts(&mut c),
        [answer(&relay::encode(
            &prefix(9),
            Code::Topology as u8,
            b"0"
        ))]
    );
    // Another node's address: forwarded, once a session is set up.
    c.handle(ask(5, Code::Address), clock.now());
    assert_eq!(
        acts(&mut c),
        [Effect::SendDatagram {
            to: address(5),
            data: hello0(&c),
        }]
    );
    assert_eq!(queued(&mut c, 5), [vec![Code::Address as u8 | FORWARD]]);
    // Garbage: nothing.
    c.handle(
        Input::Relay {
            from: registry,
            data: vec![1, 2, 3],
        },
        clock.now(),
    );
    assert!(acts(&mut c).is_empty());
    // The registry has a newer configuration: fetched.
    c.handle(ask(9, Code::Version), clock.now());
    assert_eq!(
        times(&ticks(&mut c, &mut clock, 3), &Effect::FetchConfig),
        [clock.secs - 2]
    );
}

/// Two cores, each the other's only peer, with their datagrams carried
/// between them: a query the registry relays through one reaches the
/// other over a session they set up, and its answer goes back to the
/// registry's socket.
#[test]
fn two_cores_set_a_session_up_and_a_relayed_query_gets_the_answer() {
    use re6st_proto::message::Code;
    use re6st_proto::relay;
    let clock = Clock::new();
    let mut a = core(&clock, &[]);
    let mut b = core_5(&clock);
    let registry: SocketAddr = "[::1]:4000".parse().unwrap();
    a.handle(
        Input::Relay {
            from: registry,
            data: relay::encode(&prefix(5), Code::Address as u8, b""),
        },
        clock.now(),
    );
    let to_registry = exchange(&mut a, &mut b, clock.now());
    assert_eq!(
        to_registry,
        [(
            registry,
            relay::encode(&prefix(5), Code::Address as u8, b"198.18.0.5,1194,tcp")
        )]
    );
    // Both have the session (the other's certificate) now.
    assert!(a
        .link
        .peers
        .get(&prefix(5))
        .is_some_and(|p| p.cert().is_some()));
    assert!(b
        .link
        .peers
        .get(&prefix(9))
        .is_some_and(|p| p.cert().is_some()));
}

/// A core for node 5 (its own certificate), beside [`core`]'s node 9.
fn core_5(clock: &Clock) -> NodeCore {
    let mut b = core(clock, &[]);
    let ((pki, _), id) = pki_and_node_5();
    b.link.me = Identity::new(pki.ca.clone(), id.cert.clone(), id.key.clone()).unwrap();
    b.link.my_address = "198.18.0.5,1194,tcp".into();
    // Not node 9's secrets: two crossing hellos are settled by them.
    b.link.random = |b| b.fill(5);
    b
}

/// Carries the datagrams between node 9 (`a`) and node 5 (`b`) until
/// neither sends any more; returns those sent elsewhere (from `a`).
fn exchange(a: &mut NodeCore, b: &mut NodeCore, now: Now) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut datagrams = 0;
    let mut elsewhere = Vec::new();
    loop {
        let mut moved = false;
        for (from, to, e) in effects(a)
            .into_iter()
            .map(|e| (9, 5, e))
            .chain(effects(b).into_iter().map(|e| (5, 9, e)))
        {
            if let Effect::SendDatagram { to: addr, data } = e {
                if addr != address(to) {
                    elsewhere.push((addr, data));
                    continue;
                }
                moved = true;
                datagrams += 1;
                let input = Input::Datagram {
                    from: address(from),
                    data,
                };
                if to == 5 {
                    b.handle(input, now);
                } else {
                    a.handle(input, now);
                }
            }
        }
        assert!(datagrams < 40, "no end to the exchange");
        if !moved {
            return elsewhere;
        }
    }
}

/// Two nodes that start a session with each other at the same moment
/// (each sends a hello0 before it hears the other's: a new tunnel makes
/// both ends talk) still get one, at once: neither waits for its hello0's
/// re-send (4 s) while the other's hello0 waits in vain for an answer.
#[test]
fn two_nodes_opening_a_session_at_the_same_time_get_one_at_once() {
    use re6st_proto::message::Code;
    let clock = Clock::new();
    let mut a = core(&clock, &[]);
    let mut b = core_5(&clock);
    // Both ask the other's address, before any datagram crossed.
    a.send_to_peer(prefix(5), &[Code::Address as u8]);
    b.send_to_peer(prefix(9), &[Code::Address as u8]);
    exchange(&mut a, &mut b, clock.now());
    assert_eq!(
        a.manager().cache().address(&prefix(5)),
        Some("198.18.0.5,1194,tcp")
    );
    assert_eq!(
        b.manager().cache().address(&prefix(9)),
        Some("198.18.0.9,1194,udp")
    );
    assert!(a.link.pending.is_empty() && b.link.pending.is_empty());
}

/// The first hello0 of a session is lost (a route still settling): the
/// next tick sends it again, and what waited for the session gets through
/// (here a query of the registry's relay, which the registry sends once
/// and waits 3 s for). Messages that wait a minute are dropped.
#[test]
fn a_lost_hello0_is_sent_again_a_second_later() {
    use re6st_proto::message::Code;
    use re6st_proto::relay;
    let mut clock = Clock::new();
    let mut a = core(&clock, &[]);
    let mut b = core_5(&clock);
    let registry: SocketAddr = "[::1]:4000".parse().unwrap();
    let ask = relay::encode(&prefix(5), Code::Address as u8, b"");
    a.handle(
        Input::Relay {
            from: registry,
            data: ask.clone(),
        },
        clock.now(),
    );
    // Lost.
    assert!(matches!(&acts(&mut a)[..], [Effect::SendDatagram { to, .. }] if *to == address(5)));
    let now = clock.advance(1);
    a.handle(Input::Tick, now);
    let answers = exchange(&mut a, &mut b, now);
    let answer = relay::encode(&prefix(5), Code::Address as u8, b"198.18.0.5,1194,tcp");
    assert!(answers.contains(&(registry, answer)), "{answers:?}");
    // To a node that never answers: hello0s 1, 2, 4... s apart, then,
    // after a minute, the message is dropped and they stop.
    a.handle(
        Input::Relay {
            from: registry,
            data: relay::encode(&prefix(7), Code::Address as u8, b""),
        },
        clock.now(),
    );
    let mut sent = Vec::new();
    for _ in 0..90 {
        let now = clock.advance(1);
        a.handle(Input::Tick, now);
        let to_7 = effects(&mut a)
            .iter()
            .any(|e| matches!(e, Effect::SendDatagram { to, .. } if *to == address(7)));
        if to_7 {
            sent.push(clock.secs - 1);
        }
    }
    assert_eq!(sent, [1, 3, 7, 15, 31]);
    assert!(a.link.pending.is_empty());
}

/// What waits for a session goes as soon as we accept one, even when the
/// peer that started it has nothing to send us (without that, it waited
/// for the peer's next message, and every retry tick started a new
/// handshake instead).
#[test]
fn accepting_a_session_sends_what_waited_for_it() {
    use re6st_proto::message::Code;
    let clock = Clock::new();
    let mut a = core(&clock, &[]);
    let mut b = core_5(&clock);
    // b asks a's address; its hello0 is lost.
    b.send_to_peer(prefix(9), &[Code::Address as u8]);
    effects(&mut b);
    // a starts a session with b, with nothing left to send once it is up.
    a.send_to_peer(prefix(5), &[Code::Address as u8]);
    a.link.pending.clear();
    exchange(&mut a, &mut b, clock.now());
    assert_eq!(
        b.manager().cache().address(&prefix(9)),
        Some("198.18.0.9,1194,udp")
    );
    assert!(b.link.pending.is_empty());
    // And a tick later, no new handshake: nothing waits, nothing is sent.
    let mut clock = clock;
    let now = clock.advance(1);
    b.handle(Input::Tick, now);
    assert!(!effects(&mut b)
        .iter()
        .any(|e| matches!(e, Effect::SendDatagram { .. })));
}

/// Peer sessions idle for 10 minutes are dropped (a node that queries a
/// node every 30 s would otherwise keep one with every node of the
/// network), but those with the peers on our servers or our tunnels and
/// with the registry's node, checked every minute.
#[test]
fn idle_sessions_go_but_those_with_neighbours_and_the_registrys_node() {
    use crate::peer_link::IDLE_SESSION;
    use re6st_proto::message::Code;
    let mut clock = Clock::new();
    let mut a = core(&clock, &[]);
    let mut b = core_5(&clock);
    a.send_to_peer(prefix(5), &[Code::Address as u8]);
    exchange(&mut a, &mut b, clock.now());
    // Node 5 is on one of our servers; 7 and the registry's node 0 never
    // answer.
    a.handle(hook(Event::ClientConnect(peer(5, 55))), clock.now());
    a.send_to_peer(prefix(7), &[Code::Address as u8]);
    a.send_to_peer(prefix(0), &[Code::Address as u8]);
    let sessions = |a: &NodeCore| -> Vec<u32> {
        let mut v: Vec<u32> = (a.link.peers.iter())
            .map(|p| p.prefix.value() as u32)
            .collect();
        v.sort();
        v
    };
    assert_eq!(sessions(&a), [0, 5, 7]);
    ticks(&mut a, &mut clock, IDLE_SESSION as u64 + 60);
    assert_eq!(sessions(&a), [0, 5]);
    // Gone from our servers: its session is idle from our last version
    // announcement to it on.
    a.handle(hook(Event::ClientDisconnect(peer(5, 55))), clock.now());
    ticks(&mut a, &mut clock, IDLE_SESSION as u64 + 60);
    assert_eq!(sessions(&a), [0]);
}
