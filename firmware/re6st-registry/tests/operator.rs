//! Operator mistakes get a clear word in the log: a registry whose `-r`
//! holds no node's babeld socket, or that has no node yet, says at
//! start-up and on every bootstrap request what it cannot serve and what
//! to do.

mod common;

use std::net::UdpSocket;

use common::*;
use re6st_registry::config::Options as CliOptions;
use re6st_testkit::Pki;

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn start_up_says_bootstrap_needs_a_node_and_its_babeld_socket() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("startup");
    write_pki(&pki, &dir);
    let run = dir.join("not-a-run-dir");
    let p = |f: &str| dir.join(f).display().to_string();
    let args = [
        "re6st-registry".to_owned(),
        format!("--ca={}", p("ca.crt")),
        format!("--key={}", p("ca.key")),
        format!("--dh={}", p("dh.pem")),
        format!("--db={}", p("registry.db")),
        format!("--run={}", run.display()),
    ];
    let o = CliOptions::parse_from_args(args.iter().map(Into::into).collect()).unwrap();
    let _ = logs();
    re6st_registry::build(&o).unwrap();
    let log = logs();
    let socket = run.join("babeld.sock").display().to_string();
    let missing_socket = format!("no babeld control socket to ask at {socket}");
    assert_eq!(count(&log, &missing_socket), 1, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains(&missing_socket) && l.contains("WARN") && l.contains("-r must be")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("cannot serve bootstrap peers yet: the registry has no node yet")
            && l.contains("re6st node")),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_bootstrap_request_says_what_is_missing() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("bootstrap");
    let socket = dir.join("run").join("babeld.sock");
    // The registry's own node is not running: nothing answers the relay.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = Server::start(
        &pki,
        &dir,
        Options {
            relay: Some(silent.local_addr().unwrap()),
            babel_socket: Some(socket.clone()),
            ..Options::default()
        },
    );
    let own = Node::register(&server, "");
    let mut node = Node::register(&server, "");
    let _ = logs();
    for _ in 0..2 {
        let (status, _) = node.call(&server, "getBootstrapPeer", &[]);
        // No peer, which is no internal error.
        assert_eq!(status, 204);
    }
    let log = logs();
    let who = format!("getBootstrapPeer from {}: ", node.prefix);
    let no_socket = format!(
        "{who}only the registry's own node can be given: no babeld control socket to ask at {}",
        socket.display()
    );
    assert_eq!(count(&log, &no_socket), 2, "{log}");
    let own_silent = format!(
        "{who}no peer to give: the registry's own node ({}) does not answer on {}: \
         run it on the registry's host",
        re6st_proto::prefix::Prefix::to_subnet(&own.prefix.parse().unwrap()),
        silent.local_addr().unwrap()
    );
    assert_eq!(count(&log, &own_silent), 2, "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// DH parameters of `bits` bits (DSA-style generation: fast).
fn weak_dh(bits: u32) -> Vec<u8> {
    let p = openssl::dsa::Dsa::generate_params(bits).unwrap();
    openssl::dh::Dh::from_pqg(
        p.p().to_owned().unwrap(),
        Some(p.q().to_owned().unwrap()),
        p.g().to_owned().unwrap(),
    )
    .unwrap()
    .params_to_pem()
    .unwrap()
}

#[test]
fn a_registry_refuses_weak_dh_parameters_at_start_up() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("weakdh");
    write_pki(&pki, &dir);
    let dh = dir.join("dh1024.pem");
    std::fs::write(&dh, weak_dh(1024)).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    let args = |dh: &std::path::Path| {
        let v = [
            "re6st-registry".to_owned(),
            format!("--ca={}", p("ca.crt")),
            format!("--key={}", p("ca.key")),
            format!("--dh={}", dh.display()),
            format!("--db={}", p("registry.db")),
            format!("--run={}", p("run")),
        ];
        CliOptions::parse_from_args(v.iter().map(Into::into).collect()).unwrap()
    };
    let Err(e) = re6st_registry::build(&args(&dh)) else {
        panic!("1024-bit DH parameters accepted");
    };
    assert!(e.contains("1024-bit DH parameters are too small"), "{e}");
    assert!(
        e.ends_with(&format!("openssl dhparam -out {} 2048", dh.display())),
        "{e}"
    );
    assert!(!dir.join("registry.db").exists(), "started anyway");
    // The parameters --init-network writes are good.
    re6st_registry::build(&args(&dir.join("dh.pem"))).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
