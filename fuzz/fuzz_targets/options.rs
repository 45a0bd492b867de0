#![no_main]
use libfuzzer_sys::fuzz_target;
use re6st_proto::options::expand;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    // The file includes itself through any '@' line: cycles must be caught.
    let mut load = |_: &str| Ok::<_, String>(s.to_owned());
    let _ = expand(["@f".to_string()], &|o| o == "--registry", &mut load);
});
