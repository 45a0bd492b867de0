#![no_main]
//! Options files (`@FILE`, one option per line, as upstream): expansion
//! (the file includes itself through any '@' line: cycles must be caught),
//! then the node's and the registry's command lines over the result.
use std::ffi::OsString;

use libfuzzer_sys::fuzz_target;
use re6st_proto::options::expand;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut load = |_: &str| Ok::<_, String>(s.to_owned());
    let words = match expand(["@f".to_string()], &|o| o == "--registry", &mut load) {
        Ok(words) => words,
        Err(_) => s.split_whitespace().map(str::to_owned).collect(),
    };
    // Without '@' arguments, the parsers read no file.
    let mut args: Vec<OsString> = vec!["re6st".into()];
    args.extend(
        words
            .into_iter()
            .filter(|a| !a.starts_with('@'))
            .map(OsString::from),
    );
    let _ = re6st_node::daemon::options::Options::parse(args.clone());
    let _ = re6st_registry::config::Options::parse_from_args(args);
});
