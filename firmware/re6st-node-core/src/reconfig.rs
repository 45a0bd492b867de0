//! A new network configuration: what must change, as a pure decision.
//!
//! Upstream restarts the whole node for most changes; we restart only the
//! parts whose parameters changed: babeld for its settings, the OpenVPN
//! servers when their limits change (a revoked peer on them is dropped
//! alone, through their management interface), and the whole node (re-executed) only for what every tunnel depends on.

use std::collections::BTreeSet;

use re6st_proto::netconfig::NetworkConfig;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Hello interval, default interface parameters or HMAC keys changed.
    pub restart_babel: bool,
    /// `max_clients` changed.
    pub restart_servers: bool,
    /// Serials of peers on our servers just revoked: to drop, alone.
    pub drop_served: BTreeSet<u64>,
    /// Encryption, IPv4 payload, client count or the same-country rule
    /// changed: every tunnel and tap is concerned.
    pub reexec: bool,
    /// Newly revoked serials.
    pub revoked: BTreeSet<u64>,
    /// Our own certificate is among them: get a new one.
    pub renew: bool,
    /// Our protocol is below the network's minimum.
    pub too_old: bool,
}

/// What to do when `new` replaces `old`; `served` are the serials of the
/// peers on our servers, `own` our certificate's serial.
pub fn plan(
    old: &NetworkConfig,
    new: &NetworkConfig,
    served: &BTreeSet<u64>,
    own: u64,
    protocol: u32,
) -> Plan {
    let revoked: BTreeSet<u64> = new.crl.difference(&old.crl).copied().collect();
    Plan {
        restart_babel: old.hello != new.hello
            || old.babel_default != new.babel_default
            || old.babel_hmac_sign != new.babel_hmac_sign
            || old.babel_hmac_accept != new.babel_hmac_accept,
        restart_servers: old.max_clients != new.max_clients,
        drop_served: revoked.intersection(served).copied().collect(),
        reexec: old.encrypt != new.encrypt
            || old.ipv4 != new.ipv4
            || old.client_count != new.client_count
            || old.same_country != new.same_country,
        renew: revoked.contains(&own),
        too_old: protocol < new.min_protocol,
        revoked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> NetworkConfig {
        NetworkConfig::new(vec![1], 10)
    }

    #[test]
    fn only_what_changed() {
        let old = base();
        let none = BTreeSet::new();
        assert_eq!(plan(&old, &old.clone(), &none, 7, 10), Plan::default());

        let mut new = old.clone();
        new.hello += 1;
        new.tunnel_refresh += 1;
        let p = plan(&old, &new, &none, 7, 10);
        assert!(p.restart_babel && !p.restart_servers && !p.reexec);

        let mut new = old.clone();
        new.crl.insert(5);
        let p = plan(&old, &new, &none, 7, 10);
        assert_eq!(p.revoked, [5].into());
        assert!(!p.restart_servers && !p.reexec, "{p:?}");
        let p = plan(&old, &new, &[5, 6].into(), 7, 10);
        assert!(!p.restart_servers && !p.reexec, "{p:?}");
        assert_eq!(p.drop_served, [5].into());
        new.crl.insert(7);
        let p = plan(&old, &new, &none, 7, 10);
        assert!(p.renew && !p.reexec, "our own revocation: {p:?}");

        let mut new = old.clone();
        new.client_count += 1;
        assert!(plan(&old, &new, &none, 7, 10).reexec);
        let mut new = old.clone();
        new.max_clients += 1;
        assert!(plan(&old, &new, &none, 7, 10).restart_servers);
        let mut new = old.clone();
        new.min_protocol = 11;
        assert!(plan(&old, &new, &none, 7, 10).too_old);
    }
}
