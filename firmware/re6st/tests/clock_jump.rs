//! The whole network (registry, nodes, their babeld and OpenVPN) on a
//! libfaketime clock that jumps 340 days ahead: every node sees its
//! certificate end within 30 days, renews it at the registry, restarts with
//! it and the network connects again. In its own test binary: the
//! environment set here reaches every process the test starts.

use std::time::Duration;

use re6st_testkit::overlay::{Overlay, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

#[test]
fn certificates_are_renewed_before_they_end() {
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        std::path::Path::new(lib).exists(),
        "libfaketime missing: make deps"
    );
    let clock = std::env::temp_dir().join(format!("re6st-clock-jump-{}", std::process::id()));
    std::fs::write(&clock, "+0\n").unwrap();
    // Only children inherit it; this is the only test of this binary.
    std::env::set_var("LD_PRELOAD", lib);
    std::env::set_var("FAKETIME_TIMESTAMP_FILE", &clock);
    std::env::set_var("FAKETIME_NO_CACHE", "1");
    std::env::set_var("FAKETIME_DONT_FAKE_MONOTONIC", "1");

    let o = Overlay::start(BIN.as_ref(), Registry::Ours, 3, None, &[]);
    o.all_pairs_reach(Duration::from_secs(120));
    let certs: Vec<Vec<u8>> = (0..3)
        .map(|n| std::fs::read(o.node_dir(n).join("cert.crt")).unwrap())
        .collect();

    std::fs::write(&clock, "+340d\n").unwrap();
    for n in 0..3 {
        assert!(
            re6st_testkit::netns::Lab::wait_until(Duration::from_secs(90), || {
                std::fs::read(o.node_dir(n).join("cert.crt")).is_ok_and(|c| c != certs[n as usize])
            }),
            "node{n} did not renew its certificate\n{}",
            o.logs()
        );
    }
    o.all_pairs_reach(Duration::from_secs(120));
    let log = o.logs();
    assert!(log.contains("certificate renewed"), "{log}");
    std::fs::remove_file(&clock).ok();
    o.finish();
}
