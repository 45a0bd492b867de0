#![no_main]
use libfuzzer_sys::fuzz_target;
use re6st_proto::address::{format_list, parse_list};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let list = parse_list(s);
    // What we accept formats to text that parses back to the same list.
    let again = parse_list(&format_list(&list.addresses));
    if !list.addresses.is_empty() {
        assert_eq!(again.addresses, list.addresses);
    }
});
