//! What OpenVPN's hooks tell the daemon (`re6st ovpn-hook` reads it from
//! OpenVPN's environment and sends it as one datagram): the events and
//! their encoding on the hook's socket.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer connects to one of our servers (it may be refused).
    ClientConnect(Peer),
    ClientDisconnect(Peer),
    /// Our client tunnel is up; `external_ip` is how the server sees us.
    RouteUp {
        cn: String,
        serial: u64,
        external_ip: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's certificate CN (`N/LEN`).
    pub cn: String,
    /// The tap interface of the server.
    pub dev: String,
    /// The peer certificate's serial number.
    pub serial: u64,
    /// The peer's public address.
    pub ip: String,
    /// Its port (0 when OpenVPN did not say): with `ip`, how the server's
    /// management interface names this very connection.
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HookError {
    #[error("OpenVPN did not set {0}")]
    MissingEnv(&'static str),
    #[error("invalid {0} in the environment")]
    BadEnv(&'static str),
    #[error("unknown script type {0:?}")]
    UnknownScript(String),
    #[error("malformed hook event")]
    Malformed,
}

impl Event {
    /// One line of tab-separated fields (no field may contain a tab or
    /// newline: CNs, interface names, serials and IPs never do).
    pub fn encode(&self) -> Vec<u8> {
        let fields: Vec<String> = match self {
            Event::ClientConnect(p) | Event::ClientDisconnect(p) => {
                let kind = if matches!(self, Event::ClientConnect(_)) {
                    "connect"
                } else {
                    "disconnect"
                };
                vec![
                    kind.into(),
                    p.cn.clone(),
                    p.dev.clone(),
                    p.serial.to_string(),
                    p.ip.clone(),
                    p.port.to_string(),
                ]
            }
            Event::RouteUp {
                cn,
                serial,
                external_ip,
            } => {
                vec![
                    "route-up".into(),
                    cn.clone(),
                    serial.to_string(),
                    external_ip.clone(),
                ]
            }
        };
        fields.join("\t").into_bytes()
    }

    pub fn decode(data: &[u8]) -> Result<Event, HookError> {
        let text = std::str::from_utf8(data).map_err(|_| HookError::Malformed)?;
        let f: Vec<&str> = text.split('\t').collect();
        let serial = |s: &str| s.parse::<u64>().map_err(|_| HookError::Malformed);
        match f.as_slice() {
            [kind @ ("connect" | "disconnect"), cn, dev, s, ip, port @ ..] if port.len() <= 1 => {
                let p = Peer {
                    cn: (*cn).into(),
                    dev: (*dev).into(),
                    serial: serial(s)?,
                    ip: (*ip).into(),
                    port: match port {
                        [p] => p.parse().map_err(|_| HookError::Malformed)?,
                        _ => 0,
                    },
                };
                Ok(if *kind == "connect" {
                    Event::ClientConnect(p)
                } else {
                    Event::ClientDisconnect(p)
                })
            }
            ["route-up", cn, s, ip] => Ok(Event::RouteUp {
                cn: (*cn).into(),
                serial: serial(s)?,
                external_ip: (*ip).into(),
            }),
            _ => Err(HookError::Malformed),
        }
    }
}
