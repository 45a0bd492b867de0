#![no_main]
//! Stock babeld's text control protocol (`dump`/`monitor` lines) as the
//! node reads it, through the routing table and the upstream-compat shim
//! (whose binary dump must decode to what it encoded), the registry's text
//! dump reader, and the `/proc/net/route` listings read by init (the
//! node's kernel check reads its routes over netlink now, no text).
use libfuzzer_sys::fuzz_target;
use re6st_node::babel::control::parse_line;
use re6st_node::babel::table::Table;
use re6st_node::babel::upstream_ctl::translate;
use re6st_proto::babel_ctl::{header, Response, HEADER_LEN};
use re6st_proto::prefix::Prefix;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let network = Prefix::from_ipv6("2001:db8::".parse().unwrap(), 32).unwrap();
    let mut table = Table::default();
    let mut lines = vec![];
    for l in text.lines() {
        if let Ok(line) = parse_line(l) {
            table.apply(line.clone());
            lines.push(line);
        }
    }
    for p in table.reachable(&network) {
        assert!(p.len() <= 128 - network.len());
    }
    let _ = table.routes_through(&network, "re6stnet0");
    let dump = translate(&lines, 0xff, |name| {
        (!name.is_empty()).then_some(name.len() as u32)
    });
    if let Ok(bytes) = Response::Dump(dump.clone()).encode() {
        let (kind, len) = header(&bytes).expect("a header");
        assert_eq!(len as usize + HEADER_LEN, bytes.len());
        assert_eq!(
            Response::decode(kind, &bytes[HEADER_LEN..]).unwrap(),
            Response::Dump(dump.clone())
        );
    }
    let _ = re6st_registry::babel::parse_ctl_dump(&dump, &network);
    let _ = re6st_registry::babel::parse_dump(text, &network);
    let _ = re6st_init::network::has_default_route(text, text);
});
