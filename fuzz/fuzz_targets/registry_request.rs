#![no_main]
//! Request targets (`/method?query`) as the registry reads them: the
//! upstream-compatible binding of re6st-proto and the registry's own
//! (which the HTTP handler uses) must agree, and what binds re-encodes
//! (as our client writes targets) to a target that binds the same.
use libfuzzer_sys::fuzz_target;
use re6st_proto::rpc;
use re6st_registry::methods;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    // Both percent-decoders follow Python's parse_qsl.
    assert_eq!(methods::percent_decode(target), rpc::form_decode(target));
    let ours = rpc::parse_target(target);
    if let Ok(req) = &ours {
        let args: Vec<(&str, &str)> = req.args().collect();
        let again = rpc::request_target(req.rpc, &args).expect("bound arguments re-encode");
        assert_eq!(rpc::parse_target(&again).as_ref(), Ok(req));
    }
    if let Ok((_, query)) = methods::split_target(target) {
        if let Ok(fields) = methods::parse_query(query) {
            let mut q = String::new();
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    q.push('&');
                }
                rpc::form_encode(k.as_bytes(), &mut q);
                q.push('=');
                rpc::form_encode(v.as_bytes(), &mut q);
            }
            assert_eq!(methods::parse_query(&q).unwrap(), fields);
        }
    }
    let _ = methods::method_of(target);
    if let (Ok(bound), Ok(req)) = (methods::bind(target), &ours) {
        assert_eq!(bound.method.name, req.rpc.name());
        for (name, value) in req.args() {
            assert_eq!(bound.arg(name), value, "{name}");
        }
    }
});
