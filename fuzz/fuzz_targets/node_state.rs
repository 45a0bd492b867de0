#![no_main]
//! The node's state files (peer cache, cached network configuration) and
//! the OpenVPN hook's events, the status JSON `re6st ctl` reads from the
//! node's socket: what decodes re-encodes to bytes that decode
//! the same. Each is tried as is and behind its magic, so the fuzzer need
//! not find the magic first.
use libfuzzer_sys::fuzz_target;
use re6st_node::openvpn::hook::{from_env, Event};
use re6st_node::state::netconfig;
use re6st_node::status::{render, NodeStatus};
use re6st_node_core::peer_cache::PeerCache;

const CAPACITY: usize = 200;

fn peers(data: &[u8]) {
    if let Ok(c) = PeerCache::from_bytes(data, CAPACITY) {
        assert!(c.len() <= CAPACITY);
        let bytes = c.to_bytes();
        let again = PeerCache::from_bytes(&bytes, CAPACITY).expect("what we write reads back");
        assert_eq!(again.to_bytes(), bytes);
    }
}

fn config(data: &[u8]) {
    if let Ok(c) = netconfig::decode(data) {
        let bytes = netconfig::encode(&c).unwrap();
        assert_eq!(netconfig::decode(&bytes).unwrap(), c);
    }
}

fuzz_target!(|data: &[u8]| {
    peers(data);
    peers(&[&b"re6stpc1"[..], data].concat());
    config(data);
    config(&[&b"re6stnc1"[..], data].concat());
    if let Ok(s) = serde_json::from_slice::<NodeStatus>(data) {
        let _ = render(&s, 1_700_000_000);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<NodeStatus>(&json).unwrap(), s);
    }
    if let Ok(e) = Event::decode(data) {
        assert_eq!(Event::decode(&e.encode()), Ok(e));
    }
    // OpenVPN's environment for the hook, as `KEY=VALUE` lines: what it
    // describes crosses the hook's socket unchanged.
    if let Ok(text) = std::str::from_utf8(data) {
        let env = |k: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_owned())
        };
        if let Ok(Some(e)) = from_env(&env) {
            if !text.contains('\t') {
                assert_eq!(Event::decode(&e.encode()), Ok(e));
            }
        }
    }
});
