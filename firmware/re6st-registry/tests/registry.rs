//! The registry over HTTP, with a Rust client: allocation under
//! concurrency, revocation, version bumps, renewal, grace period, HMAC key
//! rotation, private RPCs, bad input, and the RPCs that go through the
//! local node's relay.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use re6st_proto::cert as pcert;
use re6st_registry::registry::Environment;
use re6st_testkit::Pki;

const DAY: i64 = 86400;

fn serial(n: &Node) -> u128 {
    pcert::serial(&n.cert).unwrap()
}

#[test]
fn concurrent_registrations_get_distinct_prefixes_and_serials() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("concurrent");
    // /28 anonymous prefixes inside a /32: 16 bits... keep it small so
    // that allocation splits the tree a lot.
    let server = Arc::new(Server::start(
        &pki,
        &dir,
        Options {
            anonymous: Some(24),
            ..Options::default()
        },
    ));
    let nodes: Vec<Node> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let server = server.clone();
                s.spawn(move || Node::register(&server, ""))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let prefixes: BTreeSet<String> = nodes.iter().map(|n| n.prefix.clone()).collect();
    assert_eq!(prefixes.len(), nodes.len(), "duplicate prefix");
    for a in &prefixes {
        for b in &prefixes {
            assert!(a == b || !a.starts_with(b.as_str()), "{a} inside {b}");
        }
    }
    let serials: BTreeSet<u128> = nodes.iter().map(serial).collect();
    assert_eq!(serials, (1..=16).collect());
    let subject_serials: BTreeSet<u64> = nodes
        .iter()
        .map(|n| pcert::subject_serial(&n.cert).unwrap())
        .collect();
    assert_eq!(subject_serials, (0..16).collect());
    // Every certificate is the one stored for its prefix.
    let dump = dump_db(&server.db);
    assert_eq!(
        dump.iter()
            .filter(|l| l.starts_with("cert: ") && l.contains("Blob("))
            .count(),
        16
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_gets_errors_and_changes_nothing() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("bad");
    let server = Server::start(&pki, &dir, Options::default());
    let mut node = Node::register(&server, "");
    node.hello(&server);
    let before = dump_db(&server.db);

    let bad_csr = format!(
        "/requestCertificate?token=&req={}&location=&ip=",
        enc("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    );
    let long = format!("/getCa?x={}", "a".repeat(70_000));
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        ("malformed CSR", bad_csr, vec![], 500),
        ("unknown method", "/getSecrets".into(), vec![], 400),
        ("not a method", "/a/b".into(), vec![], 400),
        (
            "missing parameter",
            "/requestCertificate?token=".into(),
            vec![],
            400,
        ),
        ("extra parameter", "/getCa?evil=1".into(), vec![], 400),
        ("malformed query", "/getCa?evil".into(), vec![], 400),
        ("oversized request", long, vec![], 414),
        ("no HMAC", format!("/getDh?cn={}", node.prefix), vec![], 400),
        (
            "wrong HMAC",
            format!("/getDh?cn={}", node.prefix),
            vec![("Re6stHMAC", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")],
            400,
        ),
        (
            "unknown session",
            "/getDh?cn=0101".into(),
            vec![("Re6stHMAC", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")],
            400,
        ),
        (
            "forwarded for a stranger",
            "/revoke?cn_or_serial=1".into(),
            vec![("X-Forwarded-For", "192.0.2.7")],
            403,
        ),
        (
            "private token RPC from a stranger",
            "/addToken?email=a@b&token=zz".into(),
            vec![("X-Forwarded-For", "192.0.2.7")],
            403,
        ),
        (
            "private method with bad parameters from a stranger",
            "/revoke?x=1".into(),
            vec![("X-Forwarded-For", "192.0.2.7")],
            403,
        ),
        (
            "hello for an unknown prefix",
            "/hello?client_prefix=1111".into(),
            vec![],
            500,
        ),
        (
            "hello with a non-prefix",
            "/hello?client_prefix=12".into(),
            vec![],
            400,
        ),
    ];
    for (what, target, headers, want) in &cases {
        let (status, _, _) = server.get(target, headers);
        assert_eq!(status, *want, "{what}");
    }
    // Replayed HMAC: the first use succeeds, the replay fails.
    let target = format!("/getDh?cn={}", node.prefix);
    let (mac, _) = node.sign(&target);
    assert_eq!(server.get(&target, &[("Re6stHMAC", &mac)]).0, 200);
    assert_eq!(server.get(&target, &[("Re6stHMAC", &mac)]).0, 400, "replay");
    // A POST is not served.
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"POST /getCa HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut out);
    assert!(out.starts_with("HTTP/1.1 501"), "{out}");

    assert_eq!(dump_db(&server.db), before, "database changed");
    // Still serving, and sessions still work after a failure.
    assert_eq!(server.get("/getCa", &[]).0, 200);
    node.hello(&server);
    assert_eq!(node.call(&server, "getDh", &[]).0, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn revocation_lists_serial_and_bumps_version() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("crl");
    let server = Server::start(&pki, &dir, Options::default());
    let mut registry_node = Node::register(&server, "");
    let victim = Node::register(&server, "");
    let third = Node::register(&server, "");
    let c0 = network_config(&server, &mut registry_node);
    assert_eq!(c0["crl"], serde_json::json!([]));

    // By prefix: the leaf is freed and the serial listed.
    let cn = pcert::common_name(&victim.cert).unwrap();
    assert_eq!(
        server
            .get(&format!("/revoke?cn_or_serial={}", enc(&cn)), &[])
            .0,
        204
    );
    let c1 = network_config(&server, &mut registry_node);
    assert_eq!(c1["crl"], serde_json::json!([serial(&victim) as u64]));
    assert_eq!(version_of(&c1), version_of(&c0) + 1);
    assert!(!dump_db(&server.db)
        .iter()
        .any(|l| l.contains(&format!("Text(\"{}\")|Null|Blob", victim.prefix))));
    // Its session is gone.
    assert_eq!(
        server
            .get(&format!("/hello?client_prefix={}", victim.prefix), &[])
            .0,
        500
    );

    // By serial: the certificate stays, and renewal gives a new serial
    // with the same expiry.
    let mut third = third;
    assert_eq!(
        server
            .get(&format!("/revoke?cn_or_serial={}", serial(&third)), &[])
            .0,
        204
    );
    let c2 = network_config(&server, &mut registry_node);
    assert_eq!(c2["crl"].as_array().unwrap().len(), 2);
    assert_eq!(version_of(&c2), version_of(&c1) + 1);
    let (status, pem) = third.call(&server, "renewCertificate", &[]);
    assert_eq!(status, 200);
    let renewed = openssl::x509::X509::from_pem(&pem).unwrap();
    assert_ne!(pcert::serial(&renewed).unwrap(), serial(&third));
    assert_eq!(
        pcert::not_after(&renewed).unwrap(),
        pcert::not_after(&third.cert).unwrap()
    );
    assert_eq!(
        pcert::common_name(&renewed).unwrap(),
        pcert::common_name(&third.cert).unwrap()
    );

    // That serial is no longer in use: nothing to revoke, which is no
    // internal error (upstream answers 500); nor is an unknown subnet, and
    // a value that is neither a serial nor a subnet is a bad request.
    assert_eq!(
        server
            .get(&format!("/revoke?cn_or_serial={}", serial(&third)), &[])
            .0,
        404
    );
    assert_eq!(
        server
            .get(&format!("/revoke?cn_or_serial={}", enc(&cn)), &[])
            .0,
        404
    );
    assert_eq!(server.get("/revoke?cn_or_serial=nonsense", &[]).0, 400);
    assert_eq!(
        version_of(&network_config(&server, &mut registry_node)),
        version_of(&c2)
    );

    // Once the revoked certificates have expired, the CRL is purged.
    server.clock.advance(400 * DAY);
    server.registry.cleanup().unwrap();
    server.clock.advance(-400 * DAY);
    let c3 = network_config(&server, &mut registry_node);
    assert_eq!(c3["crl"], serde_json::json!([]));
    assert_eq!(version_of(&c3), version_of(&c2) + 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn version_bumps_only_when_configuration_changes() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("version");
    let (v1, prefix) = {
        let server = Server::start(&pki, &dir, Options::default());
        let mut node = Node::register(&server, "");
        let c = network_config(&server, &mut node);
        // The first registration set registry_prefix: version 1.
        assert_eq!(version_of(&c), 1);
        assert_eq!(c["registry_prefix"], node.prefix.as_str());
        (version_of(&c), (node.key, node.cert))
    };
    let reopen = |o: Options| {
        let server = Server::start(&pki, &dir, o);
        let pem = prefix.1.to_pem().unwrap();
        let mut node = Node::from_pem(prefix.0.clone(), &pem);
        let v = version_of(&network_config(&server, &mut node));
        drop(server);
        v
    };
    assert_eq!(reopen(Options::default()), v1, "same options, same version");
    let mut p = params();
    p.hello = 30;
    assert_eq!(
        reopen(Options {
            params: p.clone(),
            ..Options::default()
        }),
        v1 + 1
    );
    assert_eq!(
        reopen(Options {
            params: p,
            ..Options::default()
        }),
        v1 + 1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn renewal_near_expiry() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("renew");
    let server = Server::start(&pki, &dir, Options::default());
    let mut node = Node::register(&server, "");
    let (status, pem) = node.call(&server, "renewCertificate", &[]);
    assert_eq!(status, 200);
    assert_eq!(
        pem,
        node.cert.to_pem().unwrap(),
        "too early: same certificate"
    );

    server.clock.advance(340 * DAY);
    let (status, pem) = node.call(&server, "renewCertificate", &[]);
    assert_eq!(status, 200);
    let renewed = openssl::x509::X509::from_pem(&pem).unwrap();
    assert_ne!(pcert::serial(&renewed).unwrap(), serial(&node));
    let now = server.clock.now();
    let not_after = pcert::not_after(&renewed).unwrap();
    assert!(
        (not_after - (now + 365 * DAY)).abs() < 10,
        "valid one more year"
    );
    // Same subject (serialNumber and CN kept) and key.
    assert_eq!(
        renewed.subject_name().to_der().unwrap(),
        node.cert.subject_name().to_der().unwrap()
    );
    assert!(renewed.public_key().unwrap().public_eq(&node.key));
    // Expired but within the grace period: still renewable.
    server.clock.advance(400 * DAY);
    let mut node = Node::from_pem(node.key.clone(), &pem);
    assert_eq!(node.call(&server, "renewCertificate", &[]).0, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn grace_period_cleanup_frees_and_merges() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("grace");
    let server = Server::start(
        &pki,
        &dir,
        Options {
            grace_period: 10 * DAY,
            ..Options::default()
        },
    );
    let registry_node = Node::register(&server, "");
    let others: Vec<Node> = (0..3).map(|_| Node::register(&server, "")).collect();
    assert_eq!(
        server.get("/addToken?email=a@example.com&token=tok", &[]).0,
        204
    );
    let rows_before = dump_db(&server.db)
        .iter()
        .filter(|l| l.starts_with("cert: "))
        .count();

    // Tokens last the grace period.
    server.clock.advance(5 * DAY);
    server.registry.cleanup().unwrap();
    assert_eq!(server.get("/isToken?token=tok", &[]).0, 200);
    server.clock.advance(6 * DAY);
    server.registry.cleanup().unwrap();
    assert_eq!(
        server.get("/isToken?token=tok", &[]).0,
        204,
        "token expired"
    );

    // Expired certificates stay during the grace period.
    server.clock.advance(359 * DAY);
    server.registry.cleanup().unwrap();
    assert_eq!(
        dump_db(&server.db)
            .iter()
            .filter(|l| l.starts_with("cert: "))
            .count(),
        rows_before
    );

    server.clock.advance(10 * DAY);
    server.registry.cleanup().unwrap();
    let dump = dump_db(&server.db);
    for n in &others {
        assert!(
            !dump
                .iter()
                .any(|l| l.starts_with(&format!("cert: Text(\"{}\")", n.prefix))
                    && l.contains("Blob")),
            "{} still allocated",
            n.prefix
        );
    }
    // The registry's own node is never deleted.
    assert!(dump.iter().any(|l| l
        .starts_with(&format!("cert: Text(\"{}\")", registry_node.prefix))
        && l.contains("Blob")));
    // Freed leaves merged: only the registry node's branch remains split.
    let rows: Vec<&String> = dump.iter().filter(|l| l.starts_with("cert: ")).collect();
    assert_eq!(rows.len(), registry_node.prefix.len() + 1, "{rows:#?}");
    // The freed space is reused.
    let again = Node::register(&server, "");
    assert!(others.iter().any(|n| n.prefix == again.prefix));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hmac_rotation_seen_by_nodes() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("hmac");
    let server = Server::start(&pki, &dir, Options::default());
    let mut node = Node::register(&server, "");
    let decrypt = |node: &Node, v: &serde_json::Value| -> Option<Vec<u8>> {
        use base64::Engine;
        let s = v.as_str()?;
        if s.is_empty() {
            return Some(vec![]);
        }
        let enc = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        Some(re6st_proto::crypto::decrypt(&node.key, &enc).unwrap())
    };
    let state = |node: &mut Node| {
        let c = network_config(&server, node);
        (
            version_of(&c),
            decrypt(node, &c["babel_hmac_sign"]),
            decrypt(node, &c["babel_hmac_accept"]),
        )
    };
    // A fresh registry signs with one key (set at start).
    let (v0, k0, none) = state(&mut node);
    assert_eq!(k0.as_ref().map(Vec::len), Some(16));
    assert_eq!(none, None);
    let rotate = || assert_eq!(server.get("/updateHMAC", &[]).0, 204);
    rotate();
    let (v1, sign, accept) = state(&mut node);
    assert_eq!(v1, v0 + 1);
    assert_eq!(sign, k0, "still signing with the old key");
    let k1 = accept.clone().unwrap();
    assert_eq!(k1.len(), 16);
    assert_ne!(Some(k1.clone()), k0);
    rotate();
    let (v2, sign, accept) = state(&mut node);
    assert_eq!(v2, v1 + 1);
    assert_eq!(
        (sign, accept),
        (Some(k1.clone()), k0.clone()),
        "new key signs, old accepted"
    );
    rotate();
    let (v3, sign, accept) = state(&mut node);
    assert_eq!(v3, v2 + 1);
    assert_eq!((sign, accept), (Some(k1), None), "old key dropped");
    // Not authorized from elsewhere.
    assert_eq!(
        server
            .get("/updateHMAC", &[("X-Forwarded-For", "192.0.2.1")])
            .0,
        403
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tokens_and_lookups_by_email() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("tokens");
    let server = Server::start(&pki, &dir, Options::default());
    let _registry_node = Node::register(&server, "");
    assert_eq!(
        server.get("/addToken?email=a@example.com&token=abc", &[]).0,
        204
    );
    assert_eq!(
        server.get("/addToken?email=a@example.com&token=abc", &[]).0,
        409
    );
    let (status, _, generated) = server.get("/addToken?email=b@example.com&token=", &[]);
    assert_eq!(status, 200);
    assert_eq!(generated.len(), 8);
    assert_eq!(server.get("/isToken?token=abc", &[]).0, 200);
    assert_eq!(server.get("/deleteToken?token=abc", &[]).0, 204);
    assert_eq!(server.get("/isToken?token=abc", &[]).0, 204);
    // Unknown token: no certificate (204), token table unchanged.
    let key = re6st_testkit::rsa_key(2048);
    let t = format!(
        "/requestCertificate?token=nope&req={}&location=&ip=",
        enc(&csr(&key))
    );
    assert_eq!(server.get(&t, &[]).0, 204);
    // requestToken mails a token to the mbox.
    assert_eq!(server.get("/requestToken?email=c@example.com", &[]).0, 204);
    let token = last_token(&server.mbox);
    let node = Node::register(&server, &token);
    assert!(node.prefix.len() == 16);
    assert_eq!(
        server.get(&format!("/isToken?token={token}"), &[]).0,
        204,
        "spent"
    );
    let (status, _, cn) = server.get("/getNodePrefix?email=c@example.com", &[]);
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8(cn).unwrap(),
        pcert::common_name(&node.cert).unwrap()
    );
    let (status, _, ip) = server.get("/getIPv6Address?email=c@example.com", &[]);
    assert_eq!(status, 200);
    let ip: std::net::Ipv6Addr = String::from_utf8(ip).unwrap().parse().unwrap();
    let want = pki
        .network
        .concat(&node.prefix.parse().unwrap())
        .unwrap()
        .to_ipv6();
    assert_eq!(ip, want);
    assert_eq!(
        server.get("/getNodePrefix?email=nobody@example.com", &[]).0,
        204
    );
    // Header injection in an e-mail address is refused.
    assert_eq!(
        server
            .get(
                &format!("/requestToken?email={}", enc("x@y\nBcc: z@w")),
                &[]
            )
            .0,
        400
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn registration_disabled() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("disabled");
    let server = Server::start(
        &pki,
        &dir,
        Options {
            anonymous: None,
            prefix_length: 0,
            mbox: false,
            ..Options::default()
        },
    );
    let key = re6st_testkit::rsa_key(2048);
    let t = format!(
        "/requestCertificate?token=&req={}&location=&ip=",
        enc(&csr(&key))
    );
    assert_eq!(server.get(&t, &[]).0, 403);
    let t = format!(
        "/requestCertificate?token=abc&req={}&location=&ip=",
        enc(&csr(&key))
    );
    assert_eq!(server.get(&t, &[]).0, 403);
    assert_eq!(server.get("/requestToken?email=a@b", &[]).0, 403);
    assert_eq!(server.get("/addToken?email=a@b&token=x", &[]).0, 403);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stand-in for the registry's own node: answers relay requests as a
/// re6st node would, and records version notifications.
struct FakeNode {
    addr: std::net::SocketAddr,
    notified: Arc<Mutex<Vec<String>>>,
}

fn fake_node(answers: Vec<(&'static str, u8, String)>) -> FakeNode {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let notified = Arc::new(Mutex::new(vec![]));
    let n = notified.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let msg = &buf[..len];
            let Some(nul) = msg.iter().position(|&b| b == 0) else {
                continue;
            };
            let prefix = String::from_utf8_lossy(&msg[..nul]).into_owned();
            let code = msg.get(nul + 1).copied().unwrap_or(255);
            if code == 0 {
                n.lock().unwrap().push(prefix.clone());
            }
            for (p, c, answer) in &answers {
                if *p == prefix && *c == code {
                    let mut out = prefix.clone().into_bytes();
                    out.push(0);
                    out.push(code);
                    out.extend_from_slice(answer.as_bytes());
                    let _ = socket.send_to(&out, from);
                }
            }
        }
    });
    FakeNode { addr, notified }
}

#[test]
fn relay_rpcs_against_a_fake_local_node() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("relay");
    // Prefixes are known in advance: the registry's node gets the first
    // anonymous /20, the next node (with a token) the first free /16.
    let own: &'static str = "00000000000000000000";
    let peer: &'static str = "0000000000000001";
    let (own_subnet, peer_subnet) = (subnet(own), subnet(peer));
    let node = fake_node(vec![
        (own, 1, "192.0.2.1,1194,udp,FR;192.0.2.1,1194,tcp,FR".into()),
        (peer, 1, "198.51.100.2,1195,udp,JP".into()),
        (own, 4, "0-test, Linux".into()),
        (peer, 4, "0-test2, Linux".into()),
        (own, 5, format!("1 {peer_subnet}")),
        (peer, 5, format!("0 {own_subnet}")),
    ]);
    let server = Server::start(
        &pki,
        &dir,
        Options {
            relay: Some(node.addr),
            peers: vec![peer.parse().unwrap()],
            ..Options::default()
        },
    );
    // No node yet: an empty topology, not an internal error (upstream
    // answers 500).
    let (status, _, body) = server.get("/topology", &[]);
    assert_eq!((status, &body[..]), (200, &b"{}"[..]));
    let first = Node::register(&server, "");
    assert_eq!(first.prefix, own);
    assert_eq!(
        server
            .get("/addToken?email=p@example.com&token=tokp", &[])
            .0,
        204
    );
    let a = Node::register(&server, "tokp");
    assert_eq!(a.prefix, peer);
    let mut b = Node::register(&server, "");
    // The first registration made a new network version, announced to
    // the registry's own node.
    assert!(node.notified.lock().unwrap().iter().any(|p| p == own));

    // Bootstrap: a node's address, encrypted to the caller.
    for _ in 0..2 {
        let (status, body) = b.call(&server, "getBootstrapPeer", &[]);
        assert_eq!(status, 200);
        let text = String::from_utf8(re6st_proto::crypto::decrypt(&b.key, &body).unwrap()).unwrap();
        assert!(
            text == format!("{peer} 198.51.100.2,1195,udp,JP")
                || text == format!("{own} 192.0.2.1,1194,udp,FR;192.0.2.1,1194,tcp,FR"),
            "{text}"
        );
    }

    // versions: every known node.
    let (status, _, body) = server.get("/versions", &[]);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({own: "0-test, Linux", peer: "0-test2, Linux"})
    );

    // topology, explored from the registry's node, whose entry comes
    // first (as upstream's): how `re6st ctl topology` marks it.
    let (status, _, body) = server.get("/topology", &[]);
    assert_eq!(status, 200);
    assert!(
        body.starts_with(format!("{{\"{own_subnet}\":").as_bytes()),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let t: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let set = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(set(&t[&own_subnet]), [peer_subnet.clone()].into());
    assert_eq!(
        set(&t[""]),
        [own_subnet.clone(), peer_subnet.clone()].into()
    );

    // getIPv4Information: the first address of a routed node.
    let (status, _, ip) = server.get("/getIPv4Information?email=p@example.com", &[]);
    assert_eq!((status, ip), (200, b"198.51.100.2".to_vec()));

    // Private RPCs stay private.
    assert_eq!(
        server
            .get("/versions", &[("X-Forwarded-For", "192.0.2.9")])
            .0,
        403
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn subnet(bits: &str) -> String {
    bits.parse::<re6st_proto::prefix::Prefix>()
        .unwrap()
        .to_subnet()
}

#[test]
fn communities_from_location_and_geoip() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("geoip");
    let geoip = re6st_testkit::mmdb::build(&[
        ("192.0.2.0".parse().unwrap(), 24, "FR", "EU"),
        ("198.51.100.0".parse().unwrap(), 24, "JP", "AS"),
        ("203.0.113.0".parse().unwrap(), 24, "DE", "EU"),
    ]);
    let server = Server::start(
        &pki,
        &dir,
        Options {
            communities: Some("# test\n0 *\n10 FR\n110 @AS\n111 @EU\n"),
            geoip: Some(geoip),
            ..Options::default()
        },
    );
    let register = |location: &str, ip: &str| {
        let key = re6st_testkit::rsa_key(2048);
        let t = format!(
            "/requestCertificate?token=&req={}&location={}&ip={}",
            enc(&csr(&key)),
            enc(location),
            enc(ip)
        );
        let (status, _, body) = server.get(&t, &[]);
        assert_eq!(status, 200, "{location} {ip}");
        Node::from_pem(key, &body)
    };
    // The location given wins over the address.
    assert!(register("FR,EU", "198.51.100.1").prefix.starts_with("10"));
    // From the address: country first, then continent, then default.
    assert!(register("", "192.0.2.9").prefix.starts_with("10"));
    assert!(register("", "198.51.100.1").prefix.starts_with("110"));
    assert!(register("", "203.0.113.5").prefix.starts_with("111"));
    let unknown = register("", "");
    assert!(unknown.prefix.starts_with('0'), "{}", unknown.prefix);
    let mut a = register("US,NA", "");
    assert!(a.prefix.starts_with('0'));
    // The anonymous length counts after the community ("0").
    assert_eq!(a.prefix.len(), 1 + 20);
    // getCountry.
    let (status, body) = a.call(&server, "getCountry", &[("address", "192.0.2.1")]);
    assert_eq!((status, body), (200, b"FR".to_vec()));
    let (status, _) = a.call(&server, "getCountry", &[("address", "10.0.0.1")]);
    assert_eq!(status, 204);
    // A malformed location is refused without allocating.
    let before = dump_db(&server.db);
    let key = re6st_testkit::rsa_key(2048);
    let t = format!(
        "/requestCertificate?token=&req={}&location=FR&ip=",
        enc(&csr(&key))
    );
    assert_eq!(server.get(&t, &[]).0, 500);
    assert_eq!(dump_db(&server.db), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn overlapping_communities_are_refused() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("overlap");
    let server = Server::start(&pki, &dir, Options::default());
    let node = Node::register(&server, "");
    drop(server);
    write_pki(&pki, &dir);
    let settings = |c: &str| re6st_registry::registry::Settings {
        prefix_length: 16,
        anonymous_prefix_length: Some(20),
        grace_period: 100,
        dh: dir.join("dh.pem"),
        authorized_origins: vec![],
        mailer: None,
        communities: re6st_registry::community::Communities::parse(c).unwrap(),
        params: params(),
    };
    let open = |c: &str| {
        re6st_registry::registry::Registry::new(
            re6st_registry::db::Db::open(&dir.join("registry.db")).unwrap(),
            re6st_registry::certs::Ca::from_pem(&pki.ca_pem(), &pki.ca_key_pem()).unwrap(),
            settings(c),
            None,
            None,
            Box::new(FixedPeers(vec![])),
            Box::new(Clock::default()),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    assert!(open("1 *\n01 FR\n").is_ok());
    let err = open("1 *\n10 FR\n").unwrap_err();
    assert!(err.contains("overlap"), "{err}");
    // A community inside the allocated prefix of a node.
    let inside = format!("1 *\n{}1 FR\n", node.prefix);
    let err = open(&inside).unwrap_err();
    assert!(err.contains("contains community"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn https_when_configured() {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    use std::io::{Read, Write};
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("https");
    // Any certificate will do for the server: reuse a node-shaped one.
    let id = pki.node("1/16", 1);
    std::fs::write(dir.join("tls.crt"), id.cert_pem()).unwrap();
    std::fs::write(dir.join("tls.key"), id.key_pem()).unwrap();
    let server = Server::start(
        &pki,
        &dir,
        Options {
            tls: Some((dir.join("tls.crt"), dir.join("tls.key"))),
            ..Options::default()
        },
    );
    let mut c = SslConnector::builder(SslMethod::tls_client()).unwrap();
    c.set_verify(SslVerifyMode::NONE);
    let tcp = std::net::TcpStream::connect(server.addr).unwrap();
    let mut s = c.build().connect("registry", tcp).unwrap();
    s.write_all(b"GET /getCa HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = vec![];
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with(std::str::from_utf8(&pki.ca_pem()).unwrap()));
    // Plain HTTP on the TLS port gets no answer.
    let mut plain = std::net::TcpStream::connect(server.addr).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /getCa HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = vec![];
    let _ = plain.read_to_end(&mut out);
    assert!(!out.starts_with(b"HTTP/1.1 200"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Found by fuzzing (registry_handle, whose environment had a poor random
/// source): generated tokens were drawn again for as long as they
/// collided, with the database locked. A random source that always gives
/// the same bytes now gets an error, not a hang.
#[test]
fn generated_tokens_give_up_on_a_stuck_random_source() {
    struct Stuck;
    impl Environment for Stuck {
        fn now(&self) -> i64 {
            1_700_000_000
        }
        fn now_micros(&self) -> u64 {
            1_700_000_000_000_000
        }
        fn random(&self, buf: &mut [u8]) {
            buf.fill(7);
        }
    }
    let pki = Pki::new("2001:db8::/32");
    let registry = re6st_registry::registry::Registry::new(
        re6st_registry::db::Db::memory().unwrap(),
        re6st_registry::certs::Ca::from_pem(&pki.ca_pem(), &pki.ca_key_pem()).unwrap(),
        re6st_registry::registry::Settings {
            prefix_length: 16,
            anonymous_prefix_length: None,
            grace_period: 0,
            dh: std::path::PathBuf::from("/nonexistent/dh.pem"),
            authorized_origins: vec!["127.0.0.1".into()],
            mailer: None,
            communities: Default::default(),
            params: params(),
        },
        None,
        None,
        Box::new(FixedPeers(vec![])),
        Box::new(Stuck),
    )
    .unwrap();
    let add = || {
        registry
            .handle(&re6st_registry::registry::Request {
                target: "/addToken?email=a%40example.org&token=",
                hmac: None,
                client: "127.0.0.1".parse().unwrap(),
                forwarded_for: None,
            })
            .status
    };
    assert_eq!(add(), 200);
    assert_eq!(add(), 500);
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: std::net::SocketAddr) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(
        &format!("{from}:0")
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

/// `getCa` from `from`, with a client timeout: the CA's PEM, or why not.
fn get_ca_from(from: &str, to: std::net::SocketAddr, timeout: Duration) -> Result<Vec<u8>, String> {
    let mut s = connect_from(from, to);
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(b"GET /getCa HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = vec![];
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {text:?}"));
    }
    Ok(out)
}

#[test]
fn half_header_flood_from_one_source_leaves_others_served() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("flood");
    let server = Server::start(&pki, &dir, Options::default());
    // 600 clients from one address, each stuck in the middle of its
    // request header.
    let flood: Vec<_> = (0..600)
        .map(|_| {
            let mut s = connect_from("127.0.0.1", server.addr);
            let _ = s.write_all(b"GET /getCa HTTP/1.1\r\nHost: x\r\n");
            s
        })
        .collect();
    // Another client is answered while the flood holds on (before, it
    // waited behind the flood until the server dropped it, ~30 s).
    let ca = get_ca_from("127.0.0.2", server.addr, Duration::from_secs(5));
    let ca = ca.expect("getCa from another address during the flood");
    assert!(String::from_utf8_lossy(&ca).contains("BEGIN CERTIFICATE"));
    drop(flood);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Whether the server closed `s` within `wait` (EOF or reset).
fn closed_within(s: &mut std::net::TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn one_source_gets_its_connection_limit() {
    use re6st_registry::http::Limits;
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("persource");
    // A long header timeout: what closes a connection here is the limit.
    let limits = Limits {
        per_source: 5,
        header_timeout: Duration::from_secs(60),
    };
    let server = Server::start(
        &pki,
        &dir,
        Options {
            limits,
            ..Options::default()
        },
    );
    let mut held: Vec<_> = (0..5)
        .map(|_| connect_from("127.0.0.3", server.addr))
        .collect();
    // Accepted in order: once the sixth is closed, the fifth was counted.
    let mut sixth = connect_from("127.0.0.3", server.addr);
    assert!(closed_within(&mut sixth, Duration::from_secs(10)));
    assert!(!closed_within(&mut held[4], Duration::from_millis(200)));
    // Other sources are not affected.
    get_ca_from("127.0.0.4", server.addr, Duration::from_secs(10)).unwrap();
    // A slot given back is usable again.
    drop(held.pop());
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while get_ca_from("127.0.0.3", server.addr, Duration::from_secs(10)).is_err() {
        assert!(std::time::Instant::now() < end, "slot not given back");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_slow_header_is_dropped_in_seconds() {
    let pki = Pki::new("2001:db8::/32");
    let dir = temp_dir("slowheader");
    let server = Server::start(&pki, &dir, Options::default());
    let mut s = connect_from("127.0.0.1", server.addr);
    s.write_all(b"GET /getCa HTTP/1.1\r\nHost: x\r\n").unwrap();
    // The default is a few seconds (it was 30 s).
    assert!(closed_within(&mut s, Duration::from_secs(15)));
    std::fs::remove_dir_all(&dir).unwrap();
}
