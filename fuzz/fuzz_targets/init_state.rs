#![no_main]
//! init's small inputs: the saved-time file (round trip), HTTP `Date`
//! headers and SNTP replies (clock sources off the network), control
//! socket requests (round trip) and the data partition's first bytes.
use libfuzzer_sys::fuzz_target;
use re6st_init::{clock, control, datapart, sntp};

fuzz_target!(|data: &[u8]| {
    if let Some(t) = clock::decode_saved(data) {
        assert_eq!(
            clock::decode_saved(clock::encode_saved(t).as_bytes()),
            Some(t)
        );
    }
    let _ = clock::parse_http_date(data);
    let nonce = data
        .get(..8)
        .map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap()));
    let _ = sntp::parse_reply(data, nonce);
    let _ = datapart::identify(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(r) = control::Request::parse(s) {
            assert_eq!(control::Request::parse(r.as_str()), Some(r));
        }
    }
});
