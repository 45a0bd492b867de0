//! Token e-mails over SMTP reach a real SMTP server (Python's smtpd, on
//! loopback), and a token whose mail cannot be sent.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use re6st_registry::mail::Mailer;
use re6st_testkit::upstream_python;
use re6st_testkit::upstream_registry::free_port;

#[test]
fn token_mail_over_smtp() {
    let port = free_port();
    // Python 3.11 still ships smtpd: it prints every message it receives.
    let mut server = Command::new(upstream_python())
        .args([
            "-W",
            "ignore",
            "-u",
            "-m",
            "smtpd",
            "-n",
            "-c",
            "DebuggingServer",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "smtpd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mailer = Mailer::new(&format!("127.0.0.1:{port}"), false, None, None);
    let sent = mailer.send_token(Some("ca@example.com"), "node@example.com", "abcdefgh", 0);
    std::thread::sleep(Duration::from_millis(300));
    let _ = server.kill();
    let mut out = String::new();
    server
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = server.wait();
    sent.unwrap();
    assert!(
        out.contains("your token to join re6st network is: abcdefgh"),
        "{out}"
    );
    assert!(out.contains("To: node@example.com"), "{out}");
    // An unreachable server is an error, not a hang or a panic.
    let dead = Mailer::new(&format!("127.0.0.1:{}", free_port()), false, None, None);
    assert!(dead
        .send_token(None, "node@example.com", "abcdefgh", 0)
        .is_err());
}

/// As upstream: a token whose mail cannot be sent stays in the database
/// (the operator can hand it over) and the caller gets a 500.
#[test]
fn undelivered_token_is_kept_and_the_failure_reported() {
    let pki = re6st_testkit::Pki::new("2001:db8::/32");
    let dir = common::temp_dir("deadmail");
    // Nothing listens there: connection refused.
    let server = common::Server::start(
        &pki,
        &dir,
        common::Options {
            mailhost: Some(format!("127.0.0.1:{}", free_port())),
            ..common::Options::default()
        },
    );
    let (status, _, _) = server.get("/requestToken?email=node%40example.com", &[]);
    assert_eq!(status, 500);
    let tokens: Vec<String> = common::dump_db(&server.db)
        .into_iter()
        .filter(|l| l.starts_with("token: "))
        .collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert!(
        tokens[0].contains("Text(\"node@example.com\")"),
        "{tokens:?}"
    );
    // The token is a good one: it registers a node.
    let token = tokens[0]
        .split('|')
        .next()
        .and_then(|t| t.strip_prefix("token: Text(\""))
        .and_then(|t| t.strip_suffix("\")"))
        .unwrap()
        .to_owned();
    let node = common::Node::register(&server, &token);
    assert_eq!(node.prefix.len(), 16);
    std::fs::remove_dir_all(&dir).unwrap();
}
