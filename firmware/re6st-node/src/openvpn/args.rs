//! OpenVPN command lines equivalent to upstream's.

use std::path::{Path, PathBuf};

use re6st_proto::address::Proto;

/// Link MTU of UDP tunnels by address family (upstream's values).
fn link_mtu(proto: Proto) -> Option<u32> {
    match proto {
        Proto::Udp | Proto::Udp4 => Some(1432),
        Proto::Udp6 => Some(1450),
        _ => None,
    }
}

/// OpenVPN's name of a protocol (`udp` means IPv4 UDP, as upstream).
fn ovpn_proto(proto: Proto) -> &'static str {
    match proto {
        Proto::Udp | Proto::Udp4 => "udp4",
        Proto::Tcp | Proto::Tcp4 => "tcp4",
        Proto::Udp6 => "udp6",
        Proto::Tcp6 => "tcp6",
    }
}

/// What every OpenVPN process of a node shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Network configuration `encrypt`.
    pub encrypt: bool,
    /// The hook command (`/usr/bin/re6st ovpn-hook /run/re6stnet/ovpn.sock`).
    pub hook: String,
    /// `--ping-exit` seconds (4 × hello).
    pub ping_exit: u32,
    /// Log directory (`--ovpnlog`), one file per interface.
    pub log_dir: Option<PathBuf>,
    /// Extra arguments (`-O`).
    pub extra: Vec<String>,
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn base(c: &Common, iface: &str) -> Vec<String> {
    let mut a = vec![
        s("--dev-type"),
        s("tap"),
        s("--dev"),
        s(iface),
        s("--persist-tun"),
        s("--persist-key"),
        s("--script-security"),
        s("2"),
        s("--up"),
        format!("{} up", c.hook),
        s("--ca"),
        c.ca.display().to_string(),
        s("--cert"),
        c.cert.display().to_string(),
        s("--key"),
        c.key.display().to_string(),
        s("--ping-exit"),
        c.ping_exit.to_string(),
    ];
    if let Some(dir) = &c.log_dir {
        a.extend([
            s("--log-append"),
            dir.join(format!("{iface}.log")).display().to_string(),
        ]);
    }
    if !c.encrypt {
        // OpenVPN 2.6 only needs this to carry cleartext tunnels.
        a.extend([s("--cipher"), s("none"), s("--data-ciphers"), s("none")]);
    }
    a
}

/// A server for one port and protocol, accepting up to `max_clients`.
pub fn server(
    c: &Common,
    iface: &str,
    port: u16,
    proto: Proto,
    max_clients: u32,
    dh: &Path,
) -> Vec<String> {
    let mut a = base(c, iface);
    let mut p = ovpn_proto(proto).to_owned();
    if let Some(mtu) = link_mtu(proto) {
        a.extend([
            s("--link-mtu"),
            (mtu + 93).to_string(),
            s("--mtu-disc"),
            s("yes"),
        ]);
    } else {
        p += "-server";
    }
    a.extend([
        s("--tls-server"),
        s("--mode"),
        s("server"),
        s("--client-connect"),
        c.hook.clone(),
        s("--client-disconnect"),
        c.hook.clone(),
        s("--dh"),
        dh.display().to_string(),
        s("--max-clients"),
        max_clients.to_string(),
        s("--port"),
        port.to_string(),
        s("--proto"),
        p,
    ]);
    a.extend(c.extra.iter().cloned());
    a
}

/// A client tunnel to the node whose CN is `peer_cn`, trying `remotes` in
/// order. All remotes share one link MTU, as upstream requires.
pub fn client(
    c: &Common,
    iface: &str,
    peer_cn: &str,
    remotes: &[(String, u16, Proto)],
) -> Vec<String> {
    client_to(c, iface, Some(peer_cn), remotes)
}

/// `--client` mode: one tunnel to any node of the network at `remotes`
/// (its certificate must come from our CA; its name is not known).
pub fn client_mode(c: &Common, iface: &str, remotes: &[(String, u16, Proto)]) -> Vec<String> {
    client_to(c, iface, None, remotes)
}

fn client_to(
    c: &Common,
    iface: &str,
    peer_cn: Option<&str>,
    remotes: &[(String, u16, Proto)],
) -> Vec<String> {
    let mut a = base(c, iface);
    a.extend([s("--nobind"), s("--client")]);
    for (ip, port, proto) in remotes {
        a.extend([
            s("--remote"),
            ip.clone(),
            port.to_string(),
            s(ovpn_proto(*proto)),
        ]);
    }
    if let Some(mtu) = remotes.first().and_then(|r| link_mtu(r.2)) {
        a.extend([s("--link-mtu"), mtu.to_string(), s("--mtu-disc"), s("yes")]);
    }
    if let Some(cn) = peer_cn {
        a.extend([s("--verify-x509-name"), s(cn), s("name")]);
    }
    a.extend([
        s("--resolv-retry"),
        s("0"),
        s("--connect-retry-max"),
        s("3"),
        s("--connect-timeout"),
        re6st_node_core::tunnel::CONNECT_TIMEOUT.to_string(),
        s("--tls-exit"),
        s("--remap-usr1"),
        s("SIGTERM"),
        s("--route-up"),
        format!("{} route-up", c.hook),
    ]);
    a.extend(c.extra.iter().cloned());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common() -> Common {
        Common {
            ca: "/etc/re6stnet/ca.crt".into(),
            cert: "/etc/re6stnet/cert.crt".into(),
            key: "/etc/re6stnet/cert.key".into(),
            encrypt: false,
            hook: "/usr/bin/re6st ovpn-hook /run/re6stnet/ovpn.sock".into(),
            ping_exit: 60,
            log_dir: None,
            extra: vec![],
        }
    }

    #[test]
    fn server_and_client_like_upstream() {
        let a = server(
            &common(),
            "re6stnet-udp",
            1194,
            Proto::Udp,
            20,
            Path::new("/dh.pem"),
        )
        .join(" ");
        for want in [
            "--dev-type tap --dev re6stnet-udp",
            "--link-mtu 1525 --mtu-disc yes",
            "--mode server",
            "--max-clients 20",
            "--port 1194 --proto udp4",
            "--cipher none",
        ] {
            assert!(a.contains(want), "{want}: {a}");
        }
        let t = server(
            &common(),
            "re6stnet-tcp",
            1194,
            Proto::Tcp,
            20,
            Path::new("/dh.pem"),
        )
        .join(" ");
        assert!(t.contains("--proto tcp4-server") && !t.contains("--link-mtu"));
        let c = client(
            &common(),
            "re6stnet1",
            "2/16",
            &[("198.18.0.2".into(), 1194, Proto::Udp)],
        )
        .join(" ");
        for want in [
            "--remote 198.18.0.2 1194 udp4",
            "--link-mtu 1432",
            "--verify-x509-name 2/16 name",
            "--client",
            "--ping-exit 60",
            "--connect-timeout 15",
        ] {
            assert!(c.contains(want), "{want}: {c}");
        }
    }
}
