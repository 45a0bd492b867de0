//! Certificate and CA renewal, as upstream: 30 days before our
//! certificate expires we ask the registry for a new one (it extends
//! certificates that close to their end); a CA that changed at the
//! registry (same network) replaces ours. Pure checks; the daemon fetches,
//! writes atomically and restarts.

use openssl::pkey::{PKeyRef, Private};
use openssl::x509::{X509Ref, X509};

use re6st_proto::cert;

/// How long before the end of our certificate we renew it.
pub const AHEAD: i64 = 30 * 86_400;

/// Seconds since the epoch of an ASN.1 time.
pub fn unix(t: &openssl::asn1::Asn1TimeRef) -> Option<i64> {
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let d = epoch.diff(t).ok()?;
    Some(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

/// Why a certificate from the registry cannot replace ours.
#[derive(Debug, thiserror::Error)]
pub enum RefusedCert {
    #[error("unreadable certificate: {0}")]
    Unreadable(openssl::error::ErrorStack),
    /// OpenSSL failed while checking it.
    #[error("{0}")]
    Check(#[from] openssl::error::ErrorStack),
    #[error("not signed by our CA")]
    NotOurCa,
    #[error("not for our key")]
    NotOurKey,
    #[error("not for our prefix")]
    NotOurPrefix,
    #[error("not valid any longer than ours")]
    NotLonger,
}

pub fn due(not_after: i64, now: i64) -> bool {
    not_after - AHEAD <= now
}

/// Whether `new` (PEM from the registry) can replace `old`: signed by our
/// CA, for our key and our prefix, and valid longer; or, when `old` was
/// revoked, a reissue (another serial, valid as long).
pub fn acceptable_cert(
    new_pem: &[u8],
    old: &X509Ref,
    key: &PKeyRef<Private>,
    ca: &X509Ref,
    old_revoked: bool,
) -> Result<X509, RefusedCert> {
    let new = X509::from_pem(new_pem).map_err(RefusedCert::Unreadable)?;
    let ca_key = ca.public_key()?;
    if !new.verify(&ca_key)? {
        return Err(RefusedCert::NotOurCa);
    }
    let new_pub = new.public_key()?;
    if !new_pub.public_eq(key) {
        return Err(RefusedCert::NotOurKey);
    }
    if cert::node_prefix(&new).ok() != cert::node_prefix(old).ok() {
        return Err(RefusedCert::NotOurPrefix);
    }
    let reissued = old_revoked && cert::serial(&new).ok() != cert::serial(old).ok();
    match (unix(new.not_after()), unix(old.not_after())) {
        (Some(n), Some(o)) if n > o || (reissued && n >= o) => Ok(new),
        _ => Err(RefusedCert::NotLonger),
    }
}

/// Whether the registry's CA (PEM) is a new CA of the same network.
pub fn replacement_ca(new_pem: &[u8], old: &X509Ref) -> Option<X509> {
    let new = X509::from_pem(new_pem).ok()?;
    if new.to_der().ok()? == old.to_der().ok()? {
        return None;
    }
    let same_network = cert::network_from_ca(&new).ok()? == cert::network_from_ca(old).ok()?;
    let later = unix(new.not_after())? > unix(old.not_after())?;
    (same_network && later).then_some(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use re6st_testkit::Pki;

    #[test]
    fn renewal_checks() {
        let pki = Pki::new("2001:db8::/32");
        let a = pki.node("1/16", 2);
        let old = X509::from_pem(&a.cert_pem()).unwrap();
        let key = openssl::pkey::PKey::private_key_from_pem(&a.key_pem()).unwrap();
        let end = unix(old.not_after()).unwrap();
        assert!(due(end, end - AHEAD));
        assert!(!due(end, end - AHEAD - 1));
        // The same certificate is not an improvement; another node's is
        // refused; a certificate of another CA too.
        assert!(matches!(
            acceptable_cert(&a.cert_pem(), &old, &key, &pki.ca, false),
            Err(RefusedCert::NotLonger)
        ));
        let b = pki.node("2/16", 3);
        assert!(matches!(
            acceptable_cert(&b.cert_pem(), &old, &key, &pki.ca, false),
            Err(RefusedCert::NotOurKey)
        ));
        let other = Pki::new("2001:db8::/32");
        assert!(matches!(
            acceptable_cert(
                &other.node("1/16", 2).cert_pem(),
                &old,
                &key,
                &pki.ca,
                false
            ),
            Err(RefusedCert::NotOurCa)
        ));
        // A reissue (another serial, the same end) replaces a revoked
        // certificate only.
        let again = pki.reissue(&a, 7).cert_pem();
        assert!(acceptable_cert(&again, &old, &key, &pki.ca, false).is_err());
        assert!(acceptable_cert(&again, &old, &key, &pki.ca, true).is_ok());
        assert!(acceptable_cert(&a.cert_pem(), &old, &key, &pki.ca, true).is_err());
        assert!(replacement_ca(&pki.ca.to_pem().unwrap(), &pki.ca).is_none());
        assert!(replacement_ca(b"garbage", &pki.ca).is_none());
    }
}
