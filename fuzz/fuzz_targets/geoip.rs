#![no_main]
//! The registry's GeoIP2 database (`GEOIP2_MMDB`, read by maxminddb) and
//! lookups in it (finding 3 in fuzz/README.md: fixed by verifying at load).
use libfuzzer_sys::fuzz_target;
use re6st_registry::geoip::GeoIp;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = GeoIp::from_bytes(data.to_vec()) {
        for a in ["192.0.2.1", "2001:db8::1", "::ffff:1.2.3.4", "junk"] {
            let _ = g.lookup(a);
        }
    }
});
