//! When to ask the registry: a bootstrap peer when the tunnel manager
//! wants one (one request at a time, an empty answer said without
//! flooding the log), the network configuration when a newer version was
//! seen (retried a minute after a failure), and a renewal check of our
//! certificate and the CA (hourly, tomorrow after a refused renewal, at
//! once when our certificate is revoked).

use re6st_proto::crypto::version_number;
use re6st_proto::netconfig::NetworkConfig;
use re6st_proto::prefix::Prefix;

use super::{Effect, NodeCore, Now};
use crate::reconfig;

/// Seconds between two renewal checks.
const RENEWAL_EVERY: i64 = 3600;
/// Seconds before retrying a network configuration fetch that failed.
const CONFIG_RETRY: i64 = 60;

#[derive(Debug)]
pub struct Registry {
    bootstrap_asked: bool,
    /// Bootstrap requests in a row that gave no peer.
    bootstrap_misses: u32,
    /// When to fetch the network configuration (a newer version exists),
    /// on the interval clock.
    config_at: Option<i64>,
    config_asked: bool,
    /// When to check our certificate's and the CA's ends next (wall clock).
    renewal_at: i64,
    renewal_asked: bool,
    /// Our certificate was found revoked while a check was under way
    /// (which may have looked before): check again once it is done.
    renewal_again: bool,
}

impl Registry {
    pub fn new(now: &Now) -> Registry {
        Registry {
            bootstrap_asked: false,
            bootstrap_misses: 0,
            config_at: None,
            config_asked: false,
            // Soon after start: a node down for weeks may need it.
            renewal_at: now.wall + 10,
            renewal_asked: false,
            renewal_again: false,
        }
    }
}

impl NodeCore {
    pub(super) fn want_bootstrap(&mut self) {
        if !std::mem::replace(&mut self.registry.bootstrap_asked, true) {
            self.effects.push_back(Effect::AskBootstrap);
        }
    }

    pub(super) fn on_bootstrap(&mut self, answer: Result<Option<(String, String)>, String>) {
        self.registry.bootstrap_asked = false;
        if let Some(msg) = bootstrap_notice(&answer, &mut self.registry.bootstrap_misses) {
            self.log(1, msg);
        }
        let peer = answer.ok().flatten();
        let peer = peer.and_then(|(p, a)| Some((p.parse::<Prefix>().ok()?, a)));
        self.manager.on_bootstrap(peer);
    }

    /// A newer network version exists: fetch it in a second (unless a
    /// fetch is already planned).
    pub(super) fn newer_config_seen(&mut self, now: &Now) {
        self.registry.config_at.get_or_insert(now.mono + 1);
    }

    /// The tunnel manager wants the configuration checked: at the next
    /// tick (unless a fetch is already planned).
    pub(super) fn config_check_asked(&mut self) {
        self.registry.config_at.get_or_insert(i64::MIN);
    }

    /// The registry's network configuration: when it is newer, switches
    /// to it, tells our neighbours and restarts what it changes.
    pub(super) fn on_config_fetched(
        &mut self,
        answer: Result<Box<NetworkConfig>, String>,
        now: &Now,
    ) {
        self.registry.config_asked = false;
        let new = match answer {
            Ok(new) => new,
            Err(e) => {
                self.log(
                    1,
                    format!("new network configuration: {e}; retrying in {CONFIG_RETRY}s"),
                );
                self.registry.config_at = Some(now.mono + CONFIG_RETRY);
                return;
            }
        };
        self.registry.config_at = None;
        let number = |c: &NetworkConfig| version_number(&c.version).unwrap_or(0);
        if number(&new) <= number(&self.config) {
            self.log(
                3,
                format!("registry's network version {} is not newer", number(&new)),
            );
            return;
        }
        let plan = reconfig::plan(
            &self.config,
            &new,
            &self.served().serials(),
            self.own_serial,
            re6st_proto::PROTOCOL,
        );
        self.log(
            2,
            format!("network configuration version {}: {plan:?}", number(&new)),
        );
        self.manager.on_crl(new.crl.clone());
        self.manager
            .set_tunnel_refresh(i64::from(new.tunnel_refresh));
        self.config = (*new).clone();
        self.link.version = new.version.clone();
        self.link.crl = new.crl.clone();
        self.effects.push_back(Effect::UseConfig(new));
        // Tell our neighbours (they tell theirs).
        self.announce_version(now);
        self.on_new_config(plan, now);
    }

    pub(super) fn on_renewal_done(&mut self, retry_tomorrow: bool, now: &Now) {
        self.registry.renewal_asked = false;
        if std::mem::take(&mut self.registry.renewal_again) {
            self.renewal_check_now(now);
        } else if retry_tomorrow {
            self.registry.renewal_at = now.wall + 86_400;
        }
    }

    /// Renewed at once, not at the next tick (or as soon as a check under
    /// way is done); meanwhile the tunnels our peers close wait for the
    /// new certificate.
    pub(super) fn own_cert_revoked(&mut self, now: &Now) {
        self.registry.renewal_again = self.registry.renewal_asked;
        self.manager.on_own_revocation(now.mono);
        self.renewal_check_now(now);
    }

    /// A renewal check now rather than at the next tick (if none is under
    /// way).
    fn renewal_check_now(&mut self, now: &Now) {
        self.registry.renewal_at = now.wall;
        self.registry_tick(now);
    }

    /// The registry calls whose time came.
    pub(super) fn registry_tick(&mut self, now: &Now) {
        let r = &mut self.registry;
        if r.config_at.is_some_and(|t| now.mono >= t)
            && !std::mem::replace(&mut r.config_asked, true)
        {
            self.effects.push_back(Effect::FetchConfig);
        }
        if now.wall >= r.renewal_at {
            // Checked hourly: a failed attempt is retried then too.
            r.renewal_at = now.wall + RENEWAL_EVERY;
            if !std::mem::replace(&mut r.renewal_asked, true) {
                self.effects.push_back(Effect::CheckRenewal);
            }
        }
    }
}

/// What to say about a bootstrap answer, `misses` counting the answers in
/// a row that gave no peer: the first, then the 2nd, 4th, 8th... (a node
/// alone asks every few seconds).
fn bootstrap_notice<T, E: std::fmt::Display>(
    answer: &Result<Option<T>, E>,
    misses: &mut u32,
) -> Option<String> {
    if let Ok(Some(_)) = answer {
        *misses = 0;
        return None;
    }
    *misses = misses.saturating_add(1);
    if !misses.is_power_of_two() {
        return None;
    }
    let n = *misses;
    Some(match answer {
        Err(e) => format!("no bootstrap peer from the registry ({n} in a row): {e}"),
        _ => format!(
            "no bootstrap peer from the registry ({n} in a row): it knows no running node \
             to give. The network forms once the registry's own node (the first one it \
             registered) runs on the registry's host and re6st-registry -r is that node's \
             run directory; the registry's log says which is missing"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_bootstrap_answer_says_why_and_what_to_do_without_flooding() {
        let mut misses = 0;
        let none: Result<Option<()>, String> = Ok(None);
        let said: Vec<Option<String>> = (0..8)
            .map(|_| bootstrap_notice(&none, &mut misses))
            .collect();
        let at: Vec<usize> = (0..8).filter(|&i| said[i].is_some()).collect();
        assert_eq!(at, [0, 1, 3, 7]);
        let first = said[0].as_deref().unwrap();
        assert!(first.contains("(1 in a row)"), "{first}");
        assert!(first.contains("registry's own node"), "{first}");
        assert!(first.contains("-r is that node's run directory"), "{first}");
        // A peer resets the count; an error is said with its cause.
        assert_eq!(
            bootstrap_notice(&Ok::<_, String>(Some(())), &mut misses),
            None
        );
        let failed: Result<Option<()>, String> = Err("registry answered 500".into());
        let msg = bootstrap_notice(&failed, &mut misses).unwrap();
        assert!(msg.contains("(1 in a row): registry answered 500"), "{msg}");
    }
}
