#![no_main]
//! Certificates and requests: the fields re6st reads from a node or CA
//! certificate (PEM as files and answers carry them, and DER to reach the
//! ASN.1 content), certificate requests as the registry reads them, and
//! signed network-configuration versions; private keys as files hold them.
use libfuzzer_sys::fuzz_target;
use openssl::x509::{X509Ref, X509};
use re6st_proto::{cert, crypto};

fn fields(c: &X509Ref) {
    let _ = cert::network_from_ca(c);
    let _ = cert::common_name(c);
    if let Ok(p) = cert::node_prefix(c) {
        assert!(p.len() <= 128);
    }
    let _ = cert::subject_serial(c);
    let _ = cert::email(c);
    let _ = cert::not_before(c);
    let _ = cert::not_after(c);
    let _ = cert::serial(c);
    let _ = crypto::fingerprint(c);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = crypto::load_cert(data) {
        fields(&c);
    }
    if let Ok(c) = X509::from_der(data) {
        fields(&c);
    }
    let _ = re6st_registry::certs::parse_request(data);
    let _ = crypto::version_number(data);
    let _ = crypto::load_key(data);
});
