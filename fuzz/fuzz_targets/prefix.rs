#![no_main]
use libfuzzer_sys::fuzz_target;
use re6st_proto::prefix::Prefix;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = s.parse::<Prefix>() {
        assert_eq!(p.to_string(), s);
    }
    if let Ok(p) = Prefix::from_subnet(s) {
        assert_eq!(Prefix::from_subnet(&p.to_subnet()).unwrap(), p);
    }
    if let Ok(p) = Prefix::from_ca_serial(data) {
        assert_eq!(Prefix::from_ca_serial(&p.to_ca_serial()).unwrap(), p);
    }
});
