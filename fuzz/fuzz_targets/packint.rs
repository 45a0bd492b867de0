#![no_main]
use libfuzzer_sys::fuzz_target;
use re6st_proto::packint;

fuzz_target!(|data: &[u8]| {
    if let Ok((v, n)) = packint::unpack(data) {
        // Every decoded value re-encodes to exactly the bytes consumed.
        assert_eq!(packint::pack(v).unwrap(), &data[..n]);
    }
});
