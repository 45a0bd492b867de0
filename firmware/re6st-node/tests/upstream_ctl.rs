//! Upstream's own control-socket client (re6st.ctl, as its registry uses
//! it) reads the routes our node serves on babeld.sock, translated from a
//! stock babeld dump.

use std::time::Duration;

use re6st_node::babel::upstream_ctl;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// A stock babeld stand-in: greets, then answers each `dump`.
async fn fake_stock_babeld(listener: UnixListener) {
    loop {
        let (s, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let (r, mut w) = s.into_split();
            w.write_all(
                b"BABEL 1.0\nversion babeld-1.12.1\nhost x\nmy-id 02:00:00:00:00:00:00:01\nok\n",
            )
            .await
            .unwrap();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                assert_eq!(l, "dump");
                w.write_all(
                    b"add interface lo up true ipv6 fe80::1\n\
add neighbour n1 address fe80::2 if lo reach ffff ureach 0000 rxcost 96 txcost 96 rtt 0.1 rttcost 0 cost 96\n\
add neighbour n2 address fe80::3 if lo reach ff00 ureach 0000 rxcost 96 txcost 96 rtt 0.1 rttcost 0 cost 96\n\
add route r1 prefix 2001:db8:2::/48 from ::/0 installed yes id 02:00:00:00:00:00:00:02 metric 96 refmetric 0 via fe80::2 if lo\n\
add route r2 prefix 2001:db8:3::/48 from ::/0 installed yes id 02:00:00:00:00:00:00:03 metric 192 refmetric 96 via fe80::2 if lo\n\
add route r3 prefix 2001:db8:4::/48 from ::/0 installed yes id 02:00:00:00:00:00:00:04 metric 96 refmetric 0 via fe80::3 if lo\n\
add route r4 prefix 2001:db8:5::/48 from ::/0 installed no id 02:00:00:00:00:00:00:05 metric 500 refmetric 96 via fe80::3 if lo\n\
add route r5 prefix 2001:db9::/48 from ::/0 installed yes id 02:00:00:00:00:00:00:06 metric 96 refmetric 0 via fe80::3 if lo\n\
add xroute 2001:db8:1::/48-::/0 prefix 2001:db8:1::/48 from ::/0 metric 0\n\
ok\n",
                )
                .await
                .unwrap();
            }
        });
    }
}

#[tokio::test]
async fn upstreams_ctl_client_reads_our_translation() {
    let dir = std::env::temp_dir().join(format!("re6st-upstream-ctl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let stock = dir.join("babeld-stock.sock");
    let ours = dir.join("babeld.sock");
    let fake = tokio::spawn(fake_stock_babeld(UnixListener::bind(&stock).unwrap()));
    let server = tokio::spawn(upstream_ctl::serve(ours.clone(), stock));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // What upstream's registry computes for getBootstrapPeer, and the
    // neighbours as its tunnel manager sees them.
    let script = r#"
import sys
import logging
logging.trace = lambda *a, **k: None  # installed by re6st's setupLog
from re6st import ctl, utils
network = utils.binFromIp('2001:db8::')[:32]
class H:
    def babel_dump(self): self.done = True
h = H(); h.done = False
c = ctl.Babel(sys.argv[1], h, network)
c.request_dump()
while not h.done:
    r, w, t = {}, {}, ()
    c.select(r, w, t)
    utils.select(r, w, t)
print(sorted(p for nr in c.neighbours.values() for p in nr[1] if p))
print(sorted(str(k) for k in c.neighbours))
print(sorted(c.interfaces.values()))
"#;
    let path = ours.display().to_string();
    let out =
        tokio::task::spawn_blocking(move || re6st_testkit::run_upstream(script, &[&path], b""))
            .await
            .unwrap();
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    let bits = |hex: &str| format!("{:016b}", u16::from_str_radix(hex, 16).unwrap());
    // Installed routes inside the network, by node prefix (the /16 after
    // the /32 network); 5 is not installed, 2001:db9:: is outside.
    assert_eq!(
        lines[0],
        format!("['{}', '{}', '{}']", bits("2"), bits("3"), bits("4")),
        "{out}"
    );
    // Neighbours known by the node prefix they originate (refmetric 0).
    assert_eq!(
        lines[1],
        format!("['{}', '{}']", bits("2"), bits("4")),
        "{out}"
    );
    assert_eq!(lines[2], "['lo']", "{out}");

    server.abort();
    fake.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
