#![no_main]
//! init's profile: `key = value` files (fw_cfg, config partition, board
//! defaults) and the kernel command line, resolved alone and layered;
//! values that parse print to text that parses the same.
use libfuzzer_sys::fuzz_target;
use re6st_init::profile::{
    parse_cmdline, parse_file, parse_hostname, parse_interface, resolve, split_words, Fingerprint,
    Source,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut layers = vec![];
    if let Ok(l) = parse_cmdline(text) {
        let _ = resolve(std::slice::from_ref(&l));
        layers.push(l);
    }
    for source in [
        Source::FwCfg,
        Source::ConfigPartition,
        Source::BoardDefaults,
    ] {
        if let Ok(l) = parse_file(source, text) {
            let _ = resolve(std::slice::from_ref(&l));
            layers.push(l);
        }
    }
    let _ = resolve(&layers);
    if let Some(words) = split_words(text) {
        assert!(words.iter().all(|w| !w.contains('"')));
    }
    if let Ok(fp) = Fingerprint::parse(text) {
        assert_eq!(Fingerprint::parse(&fp.to_string()), Ok(fp));
    }
    if let Ok(h) = parse_hostname(text) {
        assert_eq!(parse_hostname(&h).as_ref(), Ok(&h));
    }
    if let Ok(i) = parse_interface(text) {
        assert_eq!(parse_interface(&i).as_ref(), Ok(&i));
    }
});
