#![no_main]
use libfuzzer_sys::fuzz_target;
use re6st_proto::message::Message;
use re6st_proto::peer::{Peer, Received};
use re6st_proto::prefix::Prefix;
use re6st_proto::relay;

fuzz_target!(|data: &[u8]| {
    let mut p = Peer::new(Prefix::EMPTY, [7; 20]);
    if let Received::Message(m) = p.decode(data) {
        let _ = Message::decode(m);
    }
    let _ = Message::decode(data);
    if let Ok(r) = relay::decode(data) {
        assert_eq!(relay::encode(&r.prefix, r.code, r.payload), data);
    }
});
