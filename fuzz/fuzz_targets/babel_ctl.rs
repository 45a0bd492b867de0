#![no_main]
//! Upstream's binary babeld control protocol: requests as our node reads
//! them from clients, dumps as our registry reads them. Whatever decodes
//! re-encodes into bytes that decode the same (bodies may carry bytes
//! beyond what their type needs: skipped, the framing stays right).
use libfuzzer_sys::fuzz_target;
use re6st_proto::babel_ctl::{header, Request, Response, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((req, used))) = Request::decode(rest) {
        let again = req.encode();
        assert_eq!(Request::decode(&again).unwrap(), Some((req, again.len())));
        rest = &rest[used..];
    }
    if let Some((kind, _)) = header(data) {
        let body = &data[HEADER_LEN.min(data.len())..];
        if let Ok(r) = Response::decode(kind, body) {
            let again = r.encode().expect("decoded sections fit");
            assert_eq!(Response::decode(kind, &again[HEADER_LEN..]).unwrap(), r);
        }
    }
});
