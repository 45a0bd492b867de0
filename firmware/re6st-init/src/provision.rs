//! Zero-touch provisioning: obtain the node's certificate from the registry
//! named by the profile, into the data partition, retrying with a capped
//! back-off for as long as the registry is unreachable or refuses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use re6st_conf::request::{CERT_FILE, KEY_FILE};
use re6st_conf::{provision, ProvisionRequest, Provisioned, TokenSource};
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::profile::{Credential, Provisioning};

/// Between attempts: quick at first (the WAN may just have come up), then
/// every few minutes, not to hammer a registry that is down.
pub const RETRY: Backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));

/// Time allowed for each call to the registry.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the identity directory already holds a key and certificate
/// (their validity was checked when the data partition was opened).
pub fn is_provisioned(identity: &Path) -> bool {
    identity.join(CERT_FILE).is_file() && identity.join(KEY_FILE).is_file()
}

fn request(p: &Provisioning, dir: &Path, timeout: Duration) -> ProvisionRequest<'static> {
    ProvisionRequest {
        registry: p.registry.clone(),
        fingerprint: Some(p.fingerprint.to_string()),
        dir: dir.to_owned(),
        req: Vec::new(),
        token: match &p.credential {
            Credential::Anonymous => TokenSource::Anonymous,
            Credential::Token(t) => TokenSource::Given(t.clone()),
        },
        location: p.location.clone(),
        ca_only: false,
        timeout,
    }
}

/// Provisions into `identity`, retrying until it works; returns the result
/// and the number of attempts it took.
pub async fn provision_with_retries(
    p: &Provisioning,
    identity: PathBuf,
    retry: Backoff,
    timeout: Duration,
) -> (Provisioned, u32) {
    let mut attempt: u32 = 0;
    loop {
        attempt = attempt.saturating_add(1);
        if let Err(e) = std::fs::create_dir_all(&identity) {
            warn!("cannot create {}: {e}", identity.display());
        }
        match provision(request(p, &identity, timeout)).await {
            Ok(done) => {
                info!(
                    attempt,
                    "provisioned by {} (network {})", p.registry, done.network
                );
                return (done, attempt);
            }
            Err(e) => {
                let delay = retry.delay(attempt);
                warn!(
                    attempt,
                    "provisioning from {} failed: {e}; retrying in {delay:?}", p.registry
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Fingerprint;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;

    fn sha1(pki: &re6st_testkit::Pki) -> Fingerprint {
        let d = pki.ca.digest(openssl::hash::MessageDigest::sha1()).unwrap();
        Fingerprint::parse(&format!("sha1:{}", hex::encode(d))).unwrap()
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("re6st-init-prov-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Forwards connections on `listener` to `target` (both ways), until
    /// the test process ends.
    fn forward(listener: TcpListener, target: u16) {
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(a) = conn else { return };
                let Ok(b) = TcpStream::connect(("127.0.0.1", target)) else {
                    return;
                };
                for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)]
                {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 8192];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
    }

    #[test]
    fn retries_until_the_registry_appears() {
        let pki = re6st_testkit::Pki::new("2001:db8::/32");
        let reg = re6st_testkit::upstream_registry::UpstreamRegistry::start(
            &pki,
            &["--anonymous-prefix-length", "20"],
        );
        // The router sees the registry through a port that opens late.
        let port = re6st_testkit::upstream_registry::free_port();
        let p = Provisioning {
            registry: format!("http://127.0.0.1:{port}/"),
            fingerprint: sha1(&pki),
            credential: Credential::Anonymous,
            location: None,
        };
        let dir = scratch("late");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let retry = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let opener = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1200));
            forward(TcpListener::bind(("127.0.0.1", port)).unwrap(), reg.port);
            reg
        });
        let start = Instant::now();
        let (done, attempts) = rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(60),
                    provision_with_retries(&p, dir.clone(), retry, Duration::from_secs(20)),
                )
                .await
            })
            .expect("provisioned within a minute");
        let reg = opener.join().unwrap();
        // 100 + 200 + 400 + 400 ms of back-off fit before the port opens,
        // and with the cap, no wait exceeds 400 ms: about 4 to 6 attempts.
        assert!((4..=8).contains(&attempts), "{attempts} attempts");
        assert!(start.elapsed() < Duration::from_secs(30));
        assert!(done.cert.is_some());
        assert!(is_provisioned(&dir), "{}", reg.log());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The key is generated off the runtime's thread, so that init's other
    /// tasks keep running meanwhile: the clock task sets the time from a
    /// registry answer, and an answer read only once a key generation of
    /// several seconds ended set the clock that much late (armv7 under
    /// TCG: 11 s behind). Ticks are counted while the CA is written and
    /// the key is not yet: that is the key generation.
    #[test]
    fn key_generation_leaves_the_runtime_free() {
        let pki = re6st_testkit::Pki::new("2001:db8::/32");
        let reg = re6st_testkit::upstream_registry::UpstreamRegistry::start(
            &pki,
            &["--anonymous-prefix-length", "20"],
        );
        let p = Provisioning {
            registry: reg.url(),
            fingerprint: sha1(&pki),
            credential: Credential::Anonymous,
            location: None,
        };
        let dir = scratch("keygen");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let retry = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let ticks = rt.block_on(async {
            let watched = dir.clone();
            let ticker = tokio::spawn(async move {
                let mut during_keygen = 0u32;
                while !watched.join(KEY_FILE).exists() {
                    if watched.join("ca.crt").exists() {
                        during_keygen += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                during_keygen
            });
            tokio::time::timeout(
                Duration::from_secs(60),
                provision_with_retries(&p, dir.clone(), retry, Duration::from_secs(20)),
            )
            .await
            .expect("provisioned within a minute");
            ticker.await.unwrap()
        });
        assert!(is_provisioned(&dir), "{}", reg.log());
        assert!(
            ticks > 0,
            "no other task ran while the key was generated: it blocks the runtime"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wrong_fingerprint_keeps_retrying_without_writing() {
        let pki = re6st_testkit::Pki::new("2001:db8::/32");
        let other = re6st_testkit::Pki::new("2001:db8::/32");
        let reg = re6st_testkit::upstream_registry::UpstreamRegistry::start(&pki, &[]);
        let p = Provisioning {
            registry: reg.url(),
            fingerprint: sha1(&other),
            credential: Credential::Token("t".into()),
            location: Some("FR,EU".into()),
        };
        let dir = scratch("mitm");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let retry = Backoff::new(Duration::from_millis(50), Duration::from_millis(100));
        let outcome = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(2),
                provision_with_retries(&p, dir.clone(), retry, Duration::from_secs(5)),
            )
            .await
        });
        assert!(outcome.is_err(), "must not succeed with a foreign CA");
        assert!(!is_provisioned(&dir));
        assert!(!dir.join("ca.crt").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
