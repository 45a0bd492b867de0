//! Address lists: upstream's parser keeps the same entries as ours, and
//! formats them the same way.

use re6st_proto::address::{format_list, parse_list};
use re6st_testkit::run_upstream;

#[test]
fn address_lists_match_upstream() {
    let lists = [
        "198.18.0.1,1194,udp",
        "198.18.0.1,1194,udp;198.18.0.1,1194,tcp;2001:db8::1,1195,udp6,FR;2001:db8::2,1196,tcp6,DE",
        // (A field-less entry like "garbage" makes upstream raise IndexError;
        // ours rejects it: see the unit tests.)
        "198.18.0.1,1194,udp;garbage,x;198.18.0.2,notaport,tcp;198.18.0.3,1194,tcp4",
        "198.18.0.1,1194,udp,FR,extra",
    ];
    let script = r#"
import sys
from re6st import utils
for line in sys.stdin.read().splitlines():
    print(utils.dump_address(x for x in utils.parse_address(line)))
"#;
    let out = String::from_utf8(run_upstream(script, &[], lists.join("\n").as_bytes())).unwrap();
    for (list, theirs) in lists.iter().zip(out.lines()) {
        let ours = parse_list(list);
        // Upstream keeps '4th field' country and drops a 5th; it does not
        // validate IPs or protocols, we do (none of these lists has a bad one).
        assert_eq!(format_list(&ours.addresses), theirs, "{list}");
    }
}
