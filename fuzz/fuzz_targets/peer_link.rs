#![no_main]
//! The node's side of the peer protocol: any datagram from any address of
//! the network, through the session lookup and the handshake (hello0/1/2
//! with the sender's certificate in DER) to replies and events. Replies
//! only go to the sender, and stay small.
use std::collections::BTreeSet;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use re6st_node_core::peer_link::PeerLink;
use re6st_proto::peer::{Identity, PeerTable};
use re6st_testkit::{NodeId, Pki};

fn pki() -> &'static (Pki, NodeId) {
    static PKI: OnceLock<(Pki, NodeId)> = OnceLock::new();
    PKI.get_or_init(|| {
        let pki = Pki::new("2001:db8::/32");
        let id = pki.node("1/16", 2);
        (pki, id)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((sender, datagram)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (pki, id) = pki();
    let mut link = PeerLink {
        me: Identity::new(pki.ca.clone(), id.cert.clone(), id.key.clone()).unwrap(),
        peers: PeerTable::default(),
        crl: BTreeSet::new(),
        my_address: "198.18.0.2,1194,tcp".into(),
        version: vec![1, 2, 3],
        info: "fuzz".into(),
        pending: Default::default(),
        random: |b| b.fill(1),
    };
    let n = u16::from_be_bytes(*sender);
    let from = SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 1).into(), 326);
    let (out, _event) = link.receive(from, datagram, 1_700_000_000_000_000);
    for (to, reply) in out {
        assert_eq!(to, from);
        assert!(reply.len() <= 4096, "{} bytes", reply.len());
    }
});
