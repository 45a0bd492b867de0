//! A real OpenVPN tunnel between two namespaces, with our command lines
//! and our binary as the OpenVPN hook: the server asks the daemon (here,
//! the test) before accepting the client, and the client learns how the
//! server sees it.

use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::Duration;

use re6st_node::openvpn::args::{client, server, Common};
use re6st_node::openvpn::hook::Event;
use re6st_proto::address::Proto;
use re6st_testkit::netns::Lab;
use re6st_testkit::Pki;

#[test]
fn tunnel_with_hook_events() {
    let dir = std::env::temp_dir().join(format!("re6st-ovpn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pki = Pki::new("2001:db8::/32");
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let dh = dir.join("dh.pem");
    std::fs::write(&dh, re6st_registry::init::FFDHE2048_PEM).unwrap();
    let mut commons = Vec::new();
    for (name, cn, serial) in [("srv", "1/16", 1), ("cli", "2/16", 2)] {
        let n = pki.node(cn, serial);
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, n.cert_pem()).unwrap();
        std::fs::write(&key, n.key_pem()).unwrap();
        let sock = dir.join(format!("{name}.sock"));
        commons.push((
            Common {
                ca: ca.clone(),
                cert,
                key,
                encrypt: false,
                hook: format!(
                    "{} ovpn-hook {}",
                    env!("CARGO_BIN_EXE_re6st"),
                    sock.display()
                ),
                ping_exit: 30,
                log_dir: None,
                extra: vec!["--verb".into(), "3".into()],
            },
            sock,
        ));
    }
    // The "daemons": accept every connection, report every event.
    let (tx, rx) = mpsc::channel();
    for (_, sock) in &commons {
        let d = UnixDatagram::bind(sock).unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok((n, from)) = d.recv_from(&mut buf) {
                let e = Event::decode(&buf[..n]).unwrap();
                if matches!(e, Event::ClientConnect(_)) {
                    if let Some(p) = from.as_pathname() {
                        let _ = d.send_to(&[1], p);
                    }
                }
                if tx.send(e).is_err() {
                    break;
                }
            }
        });
    }
    let mut lab = Lab::new();
    lab.add_ns("a");
    lab.add_ns("b");
    lab.link("a", &["198.18.0.1/24"], "b", &["198.18.0.2/24"], "eth0");
    let srv = server(&commons[0].0, "re6stnet-udp", 1194, Proto::Udp, 4, &dh);
    let cli = client(
        &commons[1].0,
        "re6stnet1",
        "1/16",
        &[("198.18.0.2".into(), 1194, Proto::Udp)],
    );
    let run = |args: Vec<String>| {
        let mut v = vec!["openvpn".to_string()];
        v.extend(args);
        v
    };
    let srv = run(srv);
    let cli = run(cli);
    lab.spawn(
        "b",
        &srv.iter().map(String::as_str).collect::<Vec<_>>(),
        &dir.join("server.log"),
    );
    lab.spawn(
        "a",
        &cli.iter().map(String::as_str).collect::<Vec<_>>(),
        &dir.join("client.log"),
    );
    let logs = || {
        format!(
            "server:\n{}\nclient:\n{}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("client.log")).unwrap_or_default()
        )
    };
    let mut connect = None;
    let mut route_up = None;
    while connect.is_none() || route_up.is_none() {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Event::ClientConnect(p)) => connect = Some(p),
            Ok(e @ Event::RouteUp { .. }) => route_up = Some(e),
            Ok(_) => {}
            Err(_) => panic!("no tunnel events\n{}", logs()),
        }
    }
    let p = connect.unwrap();
    assert_eq!(
        (p.cn.as_str(), p.dev.as_str(), p.serial, p.ip.as_str()),
        ("2/16", "re6stnet-udp", 2, "198.18.0.1")
    );
    // The client's port: with the address, how the server's management
    // interface names this connection (to drop it alone if revoked).
    assert_ne!(p.port, 0, "OpenVPN gave no trusted_port");
    assert_eq!(
        route_up.unwrap(),
        Event::RouteUp {
            cn: "1/16".into(),
            serial: 1,
            external_ip: "198.18.0.1".into()
        }
    );
    // IPv6 through the tap.
    lab.sh("a", "ip addr add 2001:db8:ff::1/64 dev re6stnet1");
    lab.sh("b", "ip addr add 2001:db8:ff::2/64 dev re6stnet-udp");
    assert!(
        Lab::wait_until(Duration::from_secs(10), || lab
            .try_sh("a", "ping -6 -c1 -W1 2001:db8:ff::2")),
        "no traffic through the tunnel\n{}",
        logs()
    );
    drop(lab);
    std::fs::remove_dir_all(&dir).ok();
}
