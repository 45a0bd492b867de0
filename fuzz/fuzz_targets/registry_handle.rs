#![no_main]
//! The registry's request handler as the HTTP server calls it (request
//! target, `Re6stHMAC` header, client address, `X-Forwarded-For`), over an
//! in-memory database: any request gets an HTTP status, never a panic.
//! Input: up to three lines (target, header, forwarded-for); the first
//! byte picks an authorized or an outside client.
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use re6st_registry::certs::Ca;
use re6st_registry::community::Communities;
use re6st_registry::db::Db;
use re6st_registry::network::NetworkParams;
use re6st_registry::registry::{Environment, NoPeers, Registry, Request, Settings};

struct Fixed(AtomicU64);

impl Environment for Fixed {
    fn now(&self) -> i64 {
        1_700_000_000
    }
    fn now_micros(&self) -> u64 {
        1_700_000_000_000_000
    }
    fn random(&self, buf: &mut [u8]) {
        // splitmix64: deterministic, but no short cycle (generated
        // tokens must not collide for ever).
        for chunk in buf.chunks_mut(8) {
            let mut z = self
                .0
                .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
                .wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_be_bytes()[..chunk.len()]);
        }
    }
}

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| {
        let pki = re6st_testkit::Pki::new("2001:db8::/32");
        // One shared file (the registry reads it for each getDh): a
        // per-process name was left behind by every run. Written under a
        // temporary name and renamed, so concurrent runs never see half.
        let dh = std::env::temp_dir().join("re6st-fuzz-ffdhe2048.pem");
        let pem = re6st_registry::init::FFDHE2048_PEM.as_bytes();
        if std::fs::read(&dh).ok().as_deref() != Some(pem) {
            let tmp = dh.with_extension(format!("{}.tmp", std::process::id()));
            std::fs::write(&tmp, pem).unwrap();
            std::fs::rename(&tmp, &dh).unwrap();
        }
        let settings = Settings {
            prefix_length: 16,
            anonymous_prefix_length: None,
            grace_period: 0,
            dh,
            authorized_origins: vec!["127.0.0.1".into(), "::1".into()],
            mailer: None,
            communities: Communities::default(),
            params: NetworkParams {
                ipv4: None,
                same_country: vec![],
                client_count: 10,
                encrypt: false,
                hello: 15,
                max_clients: 20,
                min_protocol: 1,
                tunnel_refresh: 300,
                protocol: re6st_proto::PROTOCOL,
            },
        };
        Registry::new(
            Db::memory().unwrap(),
            Ca::from_pem(&pki.ca_pem(), &pki.ca_key_pem()).unwrap(),
            settings,
            None,
            None,
            Box::new(NoPeers),
            Box::new(Fixed(AtomicU64::new(0))),
        )
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&who, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    // The server refuses longer targets (414) before the handler.
    if text.len() > re6st_registry::http::MAX_TARGET {
        return;
    }
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("");
    let hmac = lines.next();
    let forwarded_for = lines.next();
    let client: IpAddr = if who & 1 == 0 {
        "127.0.0.1".parse().unwrap()
    } else {
        "192.0.2.1".parse().unwrap()
    };
    let reply = registry().handle(&Request {
        target,
        hmac,
        client,
        forwarded_for,
    });
    assert!((200..600).contains(&reply.status), "{}", reply.status);
    if reply.status != 200 {
        assert!(reply.hmac.is_none());
    }
});
