//! Cross-checks against upstream re6stnet's own functions.

use re6st_proto::cert;
use re6st_proto::packint;
use re6st_proto::prefix::{node_address, Prefix};
use re6st_testkit::{run_upstream, temp_file, Pki};

/// Every length-class boundary and a spread of values, packed by upstream
/// and by us, must give the same bytes, and each side decodes the other's.
#[test]
fn packint_matches_upstream() {
    let mut values = vec![0u64, 1, packint::MAX - 1, packint::MAX];
    let mut start = 0u64;
    for n in 0..8 {
        for d in [0u64, 1, 2, 31, 255] {
            values.push(start.saturating_add(d).min(packint::MAX));
            values.push(start.saturating_sub(d));
        }
        start += 32u64 << (8 * n);
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        values.push((x % (packint::MAX + 1)) >> (x % 60));
    }
    let input: String = values.iter().map(|v| format!("{v}\n")).collect();
    let script = r#"
import sys
from re6st.utils import packInteger, unpackInteger
for line in sys.stdin:
    v = int(line)
    b = packInteger(v)
    assert unpackInteger(b + b'junk') == (v, len(b))
    print(b.hex())
try:
    packInteger(0x202020202020201f + 1)
    print("no-overflow")
except OverflowError:
    print("overflow")
"#;
    let out = String::from_utf8(run_upstream(script, &[], input.as_bytes())).unwrap();
    let mut lines = out.lines();
    for v in &values {
        let theirs = hex::decode(lines.next().unwrap()).unwrap();
        assert_eq!(packint::pack(*v).unwrap(), theirs, "value {v}");
        assert_eq!(packint::unpack(&theirs).unwrap(), (*v, theirs.len()));
    }
    assert_eq!(lines.next(), Some("overflow"));
    assert!(packint::pack(packint::MAX + 1).is_err());
}

/// CN -> bits, bits -> address, network from the CA serial: same as upstream.
#[test]
fn prefixes_match_upstream() {
    let pki = Pki::new("2001:db8::/32");
    let ca_path = temp_file("ca.pem", &pki.ca_pem());
    let subnets = [
        "0/16", "1/16", "65535/16", "5/8", "1/1", "0/1", "12345/24", "7/3",
    ];
    let script = r#"
import sys
from OpenSSL import crypto
from re6st import utils, x509
ca = crypto.load_certificate(crypto.FILETYPE_PEM, open(sys.argv[1], 'rb').read())
net = x509.networkFromCa(ca)
print(net)
for line in sys.stdin:
    sub = line.strip()
    b = utils.binFromSubnet(sub)
    print(b, utils.ipFromBin(net + b, '1'))
"#;
    let input: String = subnets.iter().map(|s| format!("{s}\n")).collect();
    let out = String::from_utf8(run_upstream(
        script,
        &[ca_path.to_str().unwrap()],
        input.as_bytes(),
    ))
    .unwrap();
    std::fs::remove_file(&ca_path).ok();
    let mut lines = out.lines();
    let net = cert::network_from_ca(&pki.ca).unwrap();
    assert_eq!(lines.next().unwrap(), net.to_string());
    for sub in subnets {
        let (bits, addr) = lines.next().unwrap().split_once(' ').unwrap();
        let p = Prefix::from_subnet(sub).unwrap();
        assert_eq!(p.to_string(), bits, "{sub}");
        assert_eq!(node_address(&net, &p).unwrap().to_string(), addr, "{sub}");
    }
}
