#![no_main]
//! The registry's configuration inputs: the communities file, `--ipv4`
//! and the network prefix of `init`, and relay answers from the local
//! node; plus the registry URL the nodes are given.
use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use re6st_registry::community::Communities;
use re6st_registry::{config, init, relay};
use re6st_registry_client::transport::RegistryUrl;

fuzz_target!(|data: &[u8]| {
    if let Some(&code) = data.first() {
        if let Some((p, _)) = relay::decode(data, code) {
            assert!(p.len() <= 128);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Communities::parse(text) {
        let prefixes = c.prefixes();
        let chosen = c.select("FR", "EU");
        assert!(chosen.is_empty() || prefixes.contains(&chosen));
    }
    if let Ok(p) = init::parse_network(text) {
        let again = format!("{}/{}", Ipv6Addr::from(p.left_aligned()), p.len());
        assert_eq!(init::parse_network(&again).ok(), Some(p));
    }
    let words: Vec<String> = text.split(',').map(str::to_owned).collect();
    if let Ok((net, plen)) = config::parse_ipv4(&words) {
        assert_eq!(
            config::parse_ipv4(&[net.clone(), plen.to_string()]).unwrap(),
            (net, plen)
        );
    }
    let _ = RegistryUrl::parse(text);
});
