//! Our re6st-conf provisions from the upstream registry, anonymously and
//! with a token mailed to an mbox file, and with a token that could not
//! be mailed.

use std::time::Duration;

use re6st_conf::{provision, ProvisionRequest, TokenSource};
use re6st_proto::cert;
use re6st_testkit::upstream_registry::UpstreamRegistry;
use re6st_testkit::Pki;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn anonymous_then_reuse_key() {
    let pki = Pki::new("2001:db8::/32");
    let reg = UpstreamRegistry::start(&pki, &["--anonymous-prefix-length", "20"]);
    let dir = reg.dir.join("node");
    let fp = format!(
        "sha1:{}",
        hex::encode(pki.ca.digest(openssl::hash::MessageDigest::sha1()).unwrap())
    );
    let rt = runtime();
    let req = |token| ProvisionRequest {
        registry: reg.url(),
        fingerprint: Some(fp.clone()),
        dir: dir.clone(),
        req: vec![("OU".into(), "lab".into())],
        token,
        location: None,
        ca_only: false,
        timeout: Duration::from_secs(30),
    };
    std::fs::create_dir_all(&dir).unwrap();
    let done = rt
        .block_on(provision(req(TokenSource::Anonymous)))
        .unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    let c = done.cert.unwrap();
    assert!(done.key_generated && done.conf_written);
    assert_eq!(cert::node_prefix(&c).unwrap().len(), 20);
    assert_eq!(cert::network_from_ca(&done.ca).unwrap(), pki.network);
    for f in ["ca.crt", "cert.crt", "cert.key", "re6stnet.conf"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let conf = std::fs::read_to_string(dir.join("re6stnet.conf")).unwrap();
    assert!(
        conf.starts_with(&format!("registry {}\nca ca.crt\n", reg.url())),
        "{conf}"
    );
    // Second run reuses the key and keeps the extra subject field.
    let again = rt.block_on(provision(req(TokenSource::Anonymous))).unwrap();
    assert!(!again.key_generated && !again.conf_written);
    let c2 = again.cert.unwrap();
    assert!(c2.public_key().unwrap().public_eq(&c.public_key().unwrap()));
    let ou: Vec<_> = c2
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::ORGANIZATIONALUNITNAME)
        .collect();
    assert_eq!(ou[0].data().as_slice(), b"lab");
    // A wrong fingerprint is refused before anything is requested.
    let mut bad = req(TokenSource::Anonymous);
    bad.fingerprint = Some(format!("sha1:{}", "00".repeat(20)));
    assert!(rt.block_on(provision(bad)).is_err());
}

#[test]
fn token_from_mbox() {
    let pki = Pki::new("2001:db8::/32");
    let mbox = std::env::temp_dir().join(format!("re6st-mbox-{}", std::process::id()));
    let reg = UpstreamRegistry::start(
        &pki,
        &[
            "--mailhost",
            mbox.to_str().unwrap(),
            "--prefix-length",
            "16",
        ],
    );
    let dir = reg.dir.join("node");
    std::fs::create_dir_all(&dir).unwrap();
    let mut read_token = || {
        let text = std::fs::read_to_string(&mbox).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("Hello, your token to join re6st network is: "))
            .map(str::to_owned)
    };
    let done = runtime()
        .block_on(provision(ProvisionRequest {
            registry: reg.url(),
            fingerprint: None,
            dir: dir.clone(),
            req: vec![],
            token: TokenSource::Email("node@example.com".into(), &mut read_token),
            location: None,
            ca_only: false,
            timeout: Duration::from_secs(30),
        }))
        .unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    assert_eq!(cert::node_prefix(&done.cert.unwrap()).unwrap().len(), 16);
    std::fs::remove_file(&mbox).ok();
    // A used token is refused.
    let reuse = runtime().block_on(provision(ProvisionRequest {
        registry: reg.url(),
        fingerprint: None,
        dir,
        req: vec![],
        token: TokenSource::Given("abcdefgh".into()),
        location: None,
        ca_only: false,
        timeout: Duration::from_secs(30),
    }));
    assert!(
        matches!(reuse, Err(re6st_conf::ProvisionError::InvalidToken)),
        "{reuse:?}"
    );
}

/// Upstream's registry with a mail server that cannot be reached keeps
/// the token and answers 500; we say so, with what to do, and the token
/// the operator hands over works.
#[test]
fn undelivered_token_says_what_to_do() {
    let pki = Pki::new("2001:db8::/32");
    let dead = format!(
        "127.0.0.1:{}",
        re6st_testkit::upstream_registry::free_port()
    );
    let reg = UpstreamRegistry::start(&pki, &["--mailhost", &dead, "--prefix-length", "16"]);
    let dir = reg.dir.join("node");
    std::fs::create_dir_all(&dir).unwrap();
    let request = |token| ProvisionRequest {
        registry: reg.url(),
        fingerprint: None,
        dir: dir.clone(),
        req: vec![],
        token,
        location: None,
        ca_only: false,
        timeout: Duration::from_secs(30),
    };
    let mut never = || -> Option<String> { panic!("asked for a token that was not sent") };
    let failed = runtime().block_on(provision(request(TokenSource::Email(
        "node@example.com".into(),
        &mut never,
    ))));
    let Err(e @ re6st_conf::ProvisionError::TokenNotMailed(..)) = failed else {
        panic!("{failed:?}\n{}", reg.log());
    };
    let text = e.to_string();
    assert!(
        text.contains("node@example.com") && text.contains("--token"),
        "{text}"
    );
    // What the operator finds in the database.
    let token = token_in_db(&reg.dir.join("registry.db"));
    let done = runtime()
        .block_on(provision(request(TokenSource::Given(token))))
        .unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    assert_eq!(cert::node_prefix(&done.cert.unwrap()).unwrap().len(), 16);
}

/// The one token in upstream's database (read with upstream's Python, as
/// an operator would with sqlite3).
fn token_in_db(db: &std::path::Path) -> String {
    let out = std::process::Command::new(re6st_testkit::upstream_python())
        .arg("-c")
        .arg(
            "import sqlite3, sys; \
             print(*[t for t, in sqlite3.connect(sys.argv[1]).execute('SELECT token FROM token')])",
        )
        .arg(db)
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.len(), 8, "{token:?}");
    token
}
