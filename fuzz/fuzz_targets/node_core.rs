#![no_main]
//! The node's decisions (`NodeCore`) fed what comes from outside in
//! production, decoded by the decoders the shell (`re6st-node`'s `daemon`) uses:
//! OpenVPN hook datagrams (`hook::Event::decode`), peer datagrams (the
//! core's peer link), decrypted session payloads
//! (`NodeCore::session_message`, → address, kill, version, topology) and
//! the registry's relay datagrams, babeld
//! dumps (`control::parse_line` + `Table::apply` + `ViewSource::view_of`)
//! and monitor lines (`monitor::is_link_change`), registry answers (the
//! network configuration through `NetworkConfig::decode` and
//! `parse_json` + `from_map`, bootstrap peers), interleaved with ticks and
//! timers on an advancing clock. Effects are drained after every input,
//! as the shell does. Never a panic; the tables stay within their caps.
//!
//! Input: records `[kind, seconds to wait, length (2 bytes, big-endian),
//! length bytes...]`.
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use re6st_node::babel::control::parse_line;
use re6st_node::babel::monitor::is_link_change;
use re6st_node::babel::table::Table;
use re6st_node::daemon::tasks::ViewSource;
use re6st_node::openvpn::hook::Event;
use re6st_node::openvpn::management::MAX_CONNECTIONS;
use re6st_node_core::node::hooks::MAX_SERVED_SERIALS;
use re6st_node_core::node::{Input, NodeCore, Now};
use re6st_node_core::peer_cache::PeerCache;
use re6st_node_core::peer_link::PeerLink;
use re6st_node_core::tunnel::{Config, CountryRule, Manager};
use re6st_proto::netconfig::NetworkConfig;
use re6st_proto::peer::{Identity, PeerTable};
use re6st_proto::prefix::Prefix;
use re6st_testkit::{NodeId, Pki};

/// Peers kept in the manager's cache.
const CACHE_CAPACITY: usize = 10;

fn pki() -> &'static (Pki, NodeId) {
    static PKI: OnceLock<(Pki, NodeId)> = OnceLock::new();
    PKI.get_or_init(|| {
        let pki = Pki::new("2001:db8::/32");
        let id = pki.node("1/16", 2);
        (pki, id)
    })
}

/// The node's key, for the network configuration's encrypted fields.
fn key() -> &'static PKey<Private> {
    static KEY: OnceLock<PKey<Private>> = OnceLock::new();
    KEY.get_or_init(|| PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap())
}

fn network() -> Prefix {
    Prefix::from_ipv6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32).unwrap()
}

/// A node of the network, by number (0 is the registry's node).
fn node(n: u16) -> Prefix {
    Prefix::new(u128::from(n), 16).unwrap()
}

fn node_address(n: u16) -> SocketAddr {
    SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 1).into(), 326)
}

struct Clock {
    start: Instant,
    /// The wall clock at the start: the test certificates are valid from
    /// the time they were made.
    wall: u64,
    secs: u64,
}

impl Clock {
    fn now(&self) -> Now {
        Now {
            at: self.start + Duration::from_secs(self.secs),
            mono: 1_000_000 + self.secs as i64,
            wall: (self.wall + self.secs) as i64,
            wall_us: (self.wall + self.secs) * 1_000_000,
        }
    }
}

fn drain(core: &mut NodeCore) {
    while core.poll_effect().is_some() {}
}

fuzz_target!(|data: &[u8]| {
    let (pki, id) = pki();
    let me = node(1);
    let link = PeerLink {
        me: Identity::new(pki.ca.clone(), id.cert.clone(), id.key.clone()).unwrap(),
        peers: PeerTable::default(),
        crl: BTreeSet::new(),
        my_address: "198.18.0.2,1194,tcp".into(),
        version: vec![1, 2, 3],
        info: "fuzz".into(),
        pending: Default::default(),
        random: |b| b.fill(1),
    };
    let views = ViewSource {
        socket: "/nonexistent".into(),
        network: network(),
        me,
        lan: vec!["eth0".into()],
    };
    // The shell watches the routes to the registry's node.
    let registry_node = network().concat(&node(0)).unwrap();
    let watched = [(IpAddr::V6(registry_node.to_ipv6()), registry_node.len())];
    let mut clock = Clock {
        start: Instant::now(),
        wall: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        secs: 0,
    };
    let manager = Manager::new(
        Config {
            me,
            registry: Some(node(0)),
            client_count: 2,
            tunnel_refresh: 60,
            timeout: 20,
            neighbours: BTreeSet::new(),
            disabled: BTreeSet::new(),
            countries: CountryRule::default(),
        },
        PeerCache::new(CACHE_CAPACITY),
        clock.now().mono,
        1,
    );
    let mut config = NetworkConfig::new(link.version.clone(), 10);
    config.registry_prefix = Some(node(0));
    let mut core = NodeCore::new(manager, link, config, 1000, clock.now());
    drain(&mut core);

    let mut rest = data;
    while let [kind, wait, len_hi, len_lo, tail @ ..] = rest {
        let n = usize::from(u16::from_be_bytes([*len_hi, *len_lo])).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        clock.secs += u64::from(*wait);
        let now = clock.now();
        // The shell's loop sleeps until poll_timeout, then says Timer.
        if core.poll_timeout().is_some_and(|t| t <= now.at) {
            core.handle(Input::Timer, now);
            drain(&mut core);
        }
        let input = match kind % 12 {
            0 => Event::decode(bytes).ok().map(|event| Input::Hook {
                event,
                reply_to: (wait & 1 == 0).then(|| "/run/hook-client".into()),
            }),
            1 => {
                // A session payload: the sender's number, then the payload.
                let Some((sender, payload)) = bytes.split_first_chunk::<2>() else {
                    continue;
                };
                let n = u16::from_be_bytes(*sender);
                core.session_message(node_address(n), node(n), payload, now);
                drain(&mut core);
                None
            }
            2 => {
                // A whole datagram from the network (handshakes), or
                // (sender 0xffff) one of the registry's relay.
                let Some((sender, data)) = bytes.split_first_chunk::<2>() else {
                    continue;
                };
                let (from, data) = (u16::from_be_bytes(*sender), data.to_vec());
                if from == u16::MAX {
                    let from = SocketAddr::from((Ipv6Addr::LOCALHOST, 4000));
                    Some(Input::Relay { from, data })
                } else {
                    let from = node_address(from);
                    Some(Input::Datagram { from, data })
                }
            }
            3 => {
                // A dump (none: babeld did not answer).
                if bytes.is_empty() {
                    Some(Input::Dumped(None))
                } else {
                    let mut t = Table::default();
                    for line in String::from_utf8_lossy(bytes).lines() {
                        if let Ok(l) = parse_line(line) {
                            t.apply(l);
                        }
                    }
                    Some(Input::Dumped(Some(views.view_of(&t))))
                }
            }
            4 => std::str::from_utf8(bytes)
                .ok()
                .filter(|line| is_link_change(line, &watched))
                .map(|_| Input::RoutingChanged),
            5 => Some(Input::ConfigFetched(
                NetworkConfig::decode(bytes, key())
                    .map(Box::new)
                    .map_err(|e| e.to_string()),
            )),
            6 => Some(Input::ConfigFetched(
                match re6st_proto::netconfig::parse_json(bytes) {
                    Ok(map) => NetworkConfig::from_map(map, key())
                        .map(Box::new)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
            )),
            7 => {
                // The registry's bootstrap peer: "prefix address", none, or an error.
                let text = String::from_utf8_lossy(bytes);
                Some(Input::Bootstrap(match text.split_once(' ') {
                    _ if text.is_empty() => Ok(None),
                    Some((p, a)) => Ok(Some((p.into(), a.into()))),
                    None => Err(text.into_owned()),
                }))
            }
            8 => Some(Input::Timer),
            9 => Some(Input::NewerConfigSeen),
            10 => Some(Input::BabeldStarted {
                restarted: wait & 1 == 0,
            }),
            _ => Some(Input::Tick),
        };
        if let Some(input) = input {
            core.handle(input, now);
            drain(&mut core);
        }
        assert!(core.served().serial_count() <= MAX_SERVED_SERIALS);
        assert!(core.served().links().len() <= MAX_CONNECTIONS);
        assert!(core.manager().cache().len() <= CACHE_CAPACITY);
    }
    assert!(core.poll_effect().is_none());
});
