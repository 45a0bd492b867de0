//! Crash consistency: a registry process busy registering, renewing and
//! revoking is killed (SIGKILL) at random moments; each time, the database
//! reopens and is consistent: the prefix tree partitions the network, every
//! certificate matches its leaf, serials are unique and below the counter.
//!
//! Durability: every certificate a client was answered with (and did not
//! revoke) is still in the database after any crash, including one right
//! after the answer: in some rounds the process aborts itself as soon as
//! one request thread has its answer, while the others may be in the
//! middle of a group commit.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use re6st_proto::cert as pcert;
use re6st_proto::prefix::Prefix;
use re6st_registry::registry::{Registry, Request, Settings};
use re6st_testkit::Pki;

const CHILD_ENV: &str = "RE6ST_REGISTRY_CRASH_CHILD";
/// In the child: abort right after this many answered certificates.
const ABORT_ENV: &str = "RE6ST_REGISTRY_CRASH_ABORT_AFTER";

fn open(pki: &Pki, dir: &Path) -> Registry {
    let settings = Settings {
        prefix_length: 16,
        // Long prefixes in a small space: many splits and merges.
        anonymous_prefix_length: Some(8),
        grace_period: 0,
        dh: dir.join("dh.pem"),
        authorized_origins: vec!["127.0.0.1".into()],
        mailer: None,
        communities: Default::default(),
        params: params(),
    };
    Registry::new(
        re6st_registry::db::Db::open(&dir.join("registry.db")).unwrap(),
        re6st_registry::certs::Ca::from_pem(&pki.ca_pem(), &pki.ca_key_pem()).unwrap(),
        settings,
        None,
        None,
        Box::new(FixedPeers(vec![])),
        Box::new(Clock::default()),
    )
    .unwrap()
}

/// The busy registry (runs until killed).
fn child(dir: &Path) {
    let pki_pem = std::fs::read(dir.join("ca.crt")).unwrap();
    let key_pem = std::fs::read(dir.join("ca.key")).unwrap();
    let ca = openssl::x509::X509::from_pem(&pki_pem).unwrap();
    let pki = Pki {
        network: pcert::network_from_ca(&ca).unwrap(),
        ca,
        ca_key: openssl::pkey::PKey::private_key_from_pem(&key_pem).unwrap(),
    };
    let registry = std::sync::Arc::new(open(&pki, dir));
    let abort_after: Option<u32> = std::env::var(ABORT_ENV).ok().and_then(|v| v.parse().ok());
    let answered = std::sync::atomic::AtomicU32::new(0);
    let key = re6st_testkit::rsa_key(2048);
    let target = format!(
        "/requestCertificate?token=&req={}&location=&ip=",
        enc(&csr(&key))
    );
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    std::thread::scope(|s| {
        for worker in 0..4u32 {
            let registry = registry.clone();
            let target = target.clone();
            let answered = &answered;
            s.spawn(move || {
                for i in 0u32.. {
                    let reply = registry.handle(&Request {
                        target: &target,
                        hmac: None,
                        client: local,
                        forwarded_for: None,
                    });
                    if reply.status != 200 {
                        // Full: free some space.
                        let _ = registry.cleanup();
                    }
                    if let Ok(cert) = openssl::x509::X509::from_pem(&reply.body) {
                        // Answered: the parent counts these, and checks
                        // that those kept are never lost.
                        let cn = pcert::common_name(&cert).unwrap();
                        let revoke = (i + worker) % 2 == 0;
                        println!(
                            "issued {} {cn} {}",
                            if revoke { "revoked" } else { "kept" },
                            pcert::serial(&cert).unwrap()
                        );
                        let n = answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        if abort_after == Some(n) {
                            std::process::abort();
                        }
                        if revoke {
                            registry.handle(&Request {
                                target: &format!("/revoke?cn_or_serial={}", enc(&cn)),
                                hmac: None,
                                client: local,
                                forwarded_for: None,
                            });
                        }
                    }
                    if i % 7 == 0 {
                        let _ = registry.cleanup();
                    }
                }
            });
        }
    });
}

/// Checks the reopened database; `kept` are the certificates answered
/// and not revoked (CN, serial). Returns how many certificates it holds.
fn check(pki: &Pki, dir: &Path, kept: &BTreeMap<String, u128>) -> usize {
    // Reopening runs the start-up checks and cleanup.
    drop(open(pki, dir));
    let c = rusqlite::Connection::open(dir.join("registry.db")).unwrap();
    let mut st = c.prepare("SELECT prefix, cert FROM cert").unwrap();
    let rows: Vec<(String, Option<Vec<u8>>)> = st
        .query_map([], |r| {
            let cert: Option<rusqlite::types::Value> = r.get(1)?;
            Ok((
                r.get(0)?,
                cert.and_then(|v| match v {
                    rusqlite::types::Value::Blob(b) => Some(b),
                    rusqlite::types::Value::Text(t) => Some(t.into_bytes()),
                    _ => None,
                }),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let leaves: Vec<Prefix> = rows.iter().map(|(p, _)| p.parse().unwrap()).collect();
    let coverage: f64 = leaves.iter().map(|p| 0.5f64.powi(p.len().into())).sum();
    assert!(
        (coverage - 1.0).abs() < 1e-9,
        "tree does not partition: {leaves:?}"
    );
    let mut sorted = leaves.clone();
    sorted.sort();
    for w in sorted.windows(2) {
        assert!(!w[1].starts_with(&w[0]), "{} inside {}", w[1], w[0]);
    }
    let counter: i64 = c
        .query_row("SELECT value FROM config WHERE name='serial'", [], |r| {
            r.get(0)
        })
        .unwrap_or(0);
    let mut serials = BTreeSet::new();
    let mut subject_serials = BTreeSet::new();
    let mut stored = BTreeMap::new();
    let mut live = 0;
    for (prefix, cert) in &rows {
        let Some(pem) = cert else { continue };
        if pem == b"reserved" {
            continue;
        }
        let cert = openssl::x509::X509::from_pem(pem).unwrap();
        assert_eq!(pcert::node_prefix(&cert).unwrap().to_string(), *prefix);
        let serial = pcert::serial(&cert).unwrap();
        assert!(
            serial as i64 <= counter,
            "serial {serial} above counter {counter}"
        );
        assert!(serials.insert(serial), "duplicate serial {serial}");
        assert!(subject_serials.insert(pcert::subject_serial(&cert).unwrap()));
        stored.insert(pcert::common_name(&cert).unwrap(), serial);
        live += 1;
    }
    for (cn, serial) in kept {
        assert_eq!(
            stored.get(cn),
            Some(serial),
            "certificate {cn} (serial {serial}) was answered, then lost"
        );
    }
    live
}

#[test]
fn crash_at_any_point_leaves_a_consistent_database() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let pki = Pki::new("2001:db8::/112");
    let dir = temp_dir("crash");
    write_pki(&pki, &dir);
    let mut total = 0;
    let mut kept = BTreeMap::new();
    // Rounds 0-4: killed from outside; 5-9: the child aborts itself right
    // after its (round - 2)th answer.
    for round in 0..10u64 {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "crash_at_any_point_leaves_a_consistent_database",
                "--nocapture",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let abort_after = (round >= 5).then(|| round - 2);
        if let Some(n) = abort_after {
            command.env(ABORT_ENV, n.to_string());
        }
        let mut c = command.spawn().unwrap();
        let pid = c.id();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let guard = std::thread::spawn(move || {
            // Stuck: its output ends and the count check fails.
            if wait.recv_timeout(Duration::from_secs(120)).is_err() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        });
        let (send, lines) = std::sync::mpsc::channel::<String>();
        let stdout = c.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut output = vec![];
        if abort_after.is_none() {
            // Kill it once it has issued a few certificates, whatever the
            // machine's load (a fixed delay could end before its first
            // one), then a little later each round: a different point of
            // its work.
            while output
                .iter()
                .filter(|l: &&String| l.starts_with("issued "))
                .count()
                < 3
            {
                match lines.recv() {
                    Ok(l) => output.push(l),
                    Err(_) => break,
                }
            }
            std::thread::sleep(Duration::from_millis(37 * round));
            let _ = c.kill();
        }
        c.wait().unwrap();
        let _ = done.send(());
        guard.join().unwrap();
        reader.join().unwrap();
        output.extend(lines.try_iter());
        let issued = output.iter().filter(|l| l.starts_with("issued ")).count() as u64;
        assert!(
            issued >= abort_after.unwrap_or(3),
            "round {round}: the child stopped issuing"
        );
        for line in &output {
            if let ["issued", "kept", cn, serial] = line.split(' ').collect::<Vec<_>>()[..] {
                kept.insert(cn.to_owned(), serial.parse::<u128>().unwrap());
            }
        }
        total += check(&pki, &dir, &kept);
    }
    // The child did work between crashes.
    let counter: i64 = rusqlite::Connection::open(dir.join("registry.db"))
        .unwrap()
        .query_row("SELECT value FROM config WHERE name='serial'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(counter > 10, "only {counter} certificates issued");
    let _ = total;
    std::fs::remove_dir_all(&dir).unwrap();
}
