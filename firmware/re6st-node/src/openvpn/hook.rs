//! OpenVPN hook events. OpenVPN runs `re6st ovpn-hook SOCKET [up|route-up]`
//! with the event in its environment; the hook forwards it as one
//! datagram to the daemon's Unix socket and, for `client-connect`, waits
//! for the verdict (one byte: 1 accept, 0 refuse) before telling the new
//! client its external address.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use thiserror::Error;

pub use re6st_node_core::hook_event::{Event, HookError, Peer};

/// Why the hook failed (OpenVPN then refuses the client or the tunnel).
#[derive(Debug, Error)]
pub enum HookRunError {
    #[error("usage: ovpn-hook SOCKET ...")]
    Usage,
    #[error(transparent)]
    Event(#[from] HookError),
    #[error("OpenVPN did not set dev")]
    NoDev,
    #[error("bringing the tap up: {0}")]
    TapUp(#[source] crate::kernel::KernelError),
    #[error("our reply socket: {0}")]
    ReplySocket(#[source] std::io::Error),
    #[error("daemon socket {0}: {1}")]
    Daemon(String, #[source] std::io::Error),
    #[error("refused by the daemon")]
    Refused,
    #[error("no verdict from the daemon: {0}")]
    NoVerdict(#[source] std::io::Error),
    #[error("the client's options file: {0}")]
    ClientFile(#[source] std::io::Error),
}

fn env_var<'a>(
    env: &'a dyn Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, HookError> {
    let _ = env as &'a dyn Fn(&str) -> Option<String>;
    env(name).ok_or(HookError::MissingEnv(name))
}

fn serial(env: &dyn Fn(&str) -> Option<String>) -> Result<u64, HookError> {
    // OpenVPN gives the serial in decimal.
    env_var(env, "tls_serial_0")?
        .parse()
        .map_err(|_| HookError::BadEnv("tls_serial_0"))
}

/// The event OpenVPN describes in its environment (`script_type` etc.).
/// `Ok(None)` for `up`, which the hook handles alone.
pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Event>, HookError> {
    let script = env_var(env, "script_type")?;
    let peer = || -> Result<Peer, HookError> {
        Ok(Peer {
            cn: env_var(env, "common_name")?,
            dev: env_var(env, "dev")?,
            serial: serial(env)?,
            ip: env("trusted_ip")
                .or_else(|| env("trusted_ip6"))
                .ok_or(HookError::MissingEnv("trusted_ip"))?,
            port: env("trusted_port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
        })
    };
    Ok(Some(match script.as_str() {
        "client-connect" => Event::ClientConnect(peer()?),
        "client-disconnect" => Event::ClientDisconnect(peer()?),
        "route-up" => Event::RouteUp {
            cn: env_var(env, "common_name")?,
            serial: serial(env)?,
            external_ip: env("OPENVPN_external_ip").unwrap_or_default(),
        },
        "up" => return Ok(None),
        _ => return Err(HookError::UnknownScript(script)),
    }))
}

/// Runs the hook: `args` are what follows `ovpn-hook` (SOCKET, then the
/// words OpenVPN appends, e.g. the client-connect config file).
pub fn run(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<(), HookRunError> {
    let socket = args.first().ok_or(HookRunError::Usage)?;
    let event = match from_env(env)? {
        Some(e) => e,
        None => {
            // `up`: OpenVPN only brings a tap up itself in IPv4 mode.
            let dev = env("dev").ok_or(HookRunError::NoDev)?;
            let mtu = env("tun_mtu").and_then(|m| m.parse().ok()).unwrap_or(1500);
            let up = crate::kernel::NetOp::LinkUp {
                dev,
                mtu: Some(mtu),
            };
            return crate::kernel::apply(&up).map_err(HookRunError::TapUp);
        }
    };
    let sock = UnixDatagram::unbound().map_err(HookRunError::ReplySocket)?;
    let reply_path = std::env::temp_dir().join(format!("re6st-ovpn-hook-{}", std::process::id()));
    let _ = std::fs::remove_file(&reply_path);
    let needs_reply = matches!(event, Event::ClientConnect(_));
    let sock = if needs_reply {
        let s = UnixDatagram::bind(&reply_path).map_err(HookRunError::ReplySocket)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(HookRunError::ReplySocket)?;
        s
    } else {
        sock
    };
    let sent = sock.send_to(&event.encode(), Path::new(socket));
    let verdict = if needs_reply && sent.is_ok() {
        let mut b = [0u8; 1];
        sock.recv(&mut b).map(|_| b[0])
    } else {
        Ok(1)
    };
    let _ = std::fs::remove_file(&reply_path);
    sent.map_err(|e| HookRunError::Daemon(socket.clone(), e))?;
    match (verdict, &event) {
        (Ok(1), Event::ClientConnect(p)) => {
            // OpenVPN passes the file for the client's dynamic options last.
            if let Some(conf) = args.last().filter(|_| args.len() > 1) {
                let mut f = std::fs::File::create(conf).map_err(HookRunError::ClientFile)?;
                writeln!(f, "push \"setenv-safe external_ip {}\"", p.ip)
                    .map_err(HookRunError::ClientFile)?;
            }
            Ok(())
        }
        (Ok(1), _) => Ok(()),
        (Ok(_), _) => Err(HookRunError::Refused),
        (Err(e), _) => Err(HookRunError::NoVerdict(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn events_from_openvpn_environment() {
        let e = env(&[
            ("script_type", "client-connect"),
            ("common_name", "2/16"),
            ("dev", "re6stnet-udp"),
            ("tls_serial_0", "12"),
            ("trusted_ip", "198.18.0.2"),
        ]);
        let ev = from_env(&e).unwrap().unwrap();
        assert_eq!(Event::decode(&ev.encode()).unwrap(), ev);
        let e = env(&[
            ("script_type", "route-up"),
            ("common_name", "2/16"),
            ("tls_serial_0", "3"),
            ("OPENVPN_external_ip", "198.18.0.9"),
        ]);
        let ev = from_env(&e).unwrap().unwrap();
        assert_eq!(
            ev,
            Event::RouteUp {
                cn: "2/16".into(),
                serial: 3,
                external_ip: "198.18.0.9".into()
            }
        );
        assert_eq!(Event::decode(&ev.encode()).unwrap(), ev);
        assert_eq!(from_env(&env(&[("script_type", "up")])).unwrap(), None);
        assert!(from_env(&env(&[("script_type", "client-connect")])).is_err());
        assert!(from_env(&env(&[("script_type", "tls-verify")])).is_err());
        for bad in [
            &b""[..],
            b"connect\ta",
            b"route-up\tx\tnotanumber\ty",
            b"\xff",
        ] {
            assert!(Event::decode(bad).is_err());
        }
    }

    #[test]
    fn connect_waits_for_the_verdict_and_pushes_the_address() {
        let dir = std::env::temp_dir().join(format!("re6st-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let daemon_path = dir.join("daemon.sock");
        let daemon = UnixDatagram::bind(&daemon_path).unwrap();
        let conf = dir.join("client.conf");
        let e = env(&[
            ("script_type", "client-connect"),
            ("common_name", "2/16"),
            ("dev", "t"),
            ("tls_serial_0", "7"),
            ("trusted_ip", "198.18.0.2"),
        ]);
        for (verdict, ok) in [(1u8, true), (0u8, false)] {
            let d = daemon.try_clone().unwrap();
            let t = std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                let (n, from) = d.recv_from(&mut buf).unwrap();
                d.send_to(&[verdict], from.as_pathname().unwrap()).unwrap();
                Event::decode(&buf[..n]).unwrap()
            });
            let args = vec![
                daemon_path.display().to_string(),
                conf.display().to_string(),
            ];
            assert_eq!(run(&args, &e).is_ok(), ok);
            assert!(matches!(t.join().unwrap(), Event::ClientConnect(p) if p.serial == 7));
        }
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            "push \"setenv-safe external_ip 198.18.0.2\"\n"
        );
        // No daemon: an error, not a hang.
        let args = vec![dir.join("nobody.sock").display().to_string()];
        assert!(run(&args, &e).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
