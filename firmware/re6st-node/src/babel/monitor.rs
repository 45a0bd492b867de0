//! babeld's `monitor` stream, reduced to "something that matters changed".
//!
//! A node below its client count backs its dumps off while they show
//! nothing new (see the tunnel manager); a neighbour that appears or goes
//! away (a tunnel's babel link, a node on the LAN) is worth a dump at once,
//! and so is any news of the route to a watched prefix (the registry's
//! node: losing it is how a node finds it is cut off). Other route lines
//! are not: in a large network some route somewhere changes every second,
//! which would bring back a dump per second.
//!
//! It also says when a neighbour becomes usable (both its costs finite:
//! each side heard the other, past babeld's HMAC challenge), once per
//! neighbour until it is flushed, its cost becomes infinite again or its
//! interface goes down: the node then makes babeld exchange full route
//! tables on that tunnel (see `core::babel`). The last case is a tunnel
//! that reconnects to the same peer on the same tap (a new certificate,
//! an OpenVPN restart): babeld (`-l`) drops the tap's routes while its
//! OpenVPN is gone but keeps the neighbour, whose costs stay finite
//! through a second's outage, so without it the routes came back only
//! with the peer's next full update (4 hellos later).

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use std::net::IpAddr;

use std::collections::BTreeMap;

use super::control::{prefix, INFINITY};

/// What the monitor reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorEvent {
    /// A neighbour came or went, or the route to a watched prefix changed.
    LinksChanged,
    /// A neighbour on this interface became usable.
    NeighbourUsable(String),
}

/// Neighbours tracked as usable, at most (babeld's neighbours on our
/// interfaces: a few dozen); beyond, new ones are not reported.
const MAX_TRACKED: usize = 1024;

/// What the monitor needs of one of babeld's lines, read without parsing
/// it all: babeld tells of every neighbour at each of its hellos, IHUs and
/// neighbour checks (with 1 s hellos, several lines a second per
/// neighbour), and of every route change.
#[derive(Debug, PartialEq, Eq)]
struct Seen<'a> {
    action: &'a str,
    /// `neighbour`, `route`, ...
    kind: &'a str,
    /// babeld's key of the neighbour or route.
    key: &'a str,
    /// A neighbour's interface and whether both its costs are finite.
    iface: Option<&'a str>,
    usable: bool,
    /// An interface line's `up` (`false`: babeld took it down).
    up: Option<bool>,
    /// A route's prefix, as written.
    prefix: Option<&'a str>,
}

fn seen(raw: &str) -> Option<Seen<'_>> {
    let mut words = raw.split_ascii_whitespace();
    let action = words
        .next()
        .filter(|a| matches!(*a, "add" | "change" | "flush"))?;
    let kind = words.next()?;
    let key = words.next()?;
    let (mut iface, mut prefix, mut rx, mut tx, mut up) = (None, None, None, None, None);
    while let (Some(field), Some(value)) = (words.next(), words.next()) {
        match field {
            "if" => iface = Some(value),
            "prefix" => prefix = Some(value),
            "rxcost" => rx = value.parse::<u32>().ok(),
            "txcost" => tx = value.parse::<u32>().ok(),
            "up" => up = Some(value == "true"),
            _ => {}
        }
    }
    Some(Seen {
        action,
        kind,
        key,
        iface,
        usable: rx.is_some_and(|c| c < INFINITY) && tx.is_some_and(|c| c < INFINITY),
        prefix,
        up,
    })
}

/// The neighbours (babeld's keys) whose costs are finite, with their
/// interface.
#[derive(Debug, Default)]
pub struct Usable(BTreeMap<String, String>);

impl Usable {
    /// The interface of a neighbour that just became usable, if the line
    /// says so (the monitor reads each line once, with [`seen`]).
    #[cfg(test)]
    fn on_line(&mut self, raw: &str) -> Option<String> {
        self.on_seen(&seen(raw)?)
    }

    fn on_seen(&mut self, line: &Seen) -> Option<String> {
        if line.kind == "interface" {
            // Down (or gone): its neighbours are usable anew once it is up.
            if line.up != Some(true) {
                self.0.retain(|_, iface| iface != line.key);
            }
            return None;
        }
        if line.kind != "neighbour" {
            return None;
        }
        match line.iface {
            Some(iface) if line.action != "flush" && line.usable => {
                if self.0.len() < MAX_TRACKED && !self.0.contains_key(line.key) {
                    self.0.insert(line.key.to_owned(), iface.to_owned());
                    return Some(iface.to_owned());
                }
            }
            _ => {
                self.0.remove(line.key);
            }
        }
        None
    }
}

/// Longest monitor line read (babeld's are < 300 bytes): a longer one
/// ends the connection, which is made again.
const MAX_LINE: usize = 4096;

/// Whether a monitor line tells of a neighbour appearing or going away,
/// or of a route to one of `watched` (a flushed route's line may name
/// no prefix: any flush counts then, they are rare).
pub fn is_link_change(raw: &str, watched: &[(IpAddr, u8)]) -> bool {
    seen(raw).is_some_and(|l| link_change(&l, watched))
}

fn link_change(line: &Seen, watched: &[(IpAddr, u8)]) -> bool {
    match line.kind {
        "neighbour" => line.action != "change",
        "route" => match line.prefix {
            Some(p) => prefix(p).is_some_and(|p| watched.contains(&p)),
            None => line.action == "flush" && !watched.is_empty(),
        },
        _ => false,
    }
}

/// Follows babeld's monitor stream on `socket` (reconnecting when babeld
/// restarts): [`MonitorEvent::LinksChanged`] per burst of link changes
/// (at most one waits in the channel, so a busy babeld never queues
/// more), and every [`MonitorEvent::NeighbourUsable`].
pub fn spawn(socket: PathBuf, watched: Vec<(IpAddr, u8)>) -> mpsc::Receiver<MonitorEvent> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        // babeld opens its socket ~0.1 s after it starts: the first tries
        // come quickly (a new tunnel's table exchange waits for this
        // stream), then every 2 s.
        let mut quick = QUICK_RETRIES;
        while !tx.is_closed() {
            match follow(&socket, &watched, &tx).await {
                Ok(()) => quick = QUICK_RETRIES,
                Err(e) => tracing::debug!("babeld monitor: {e}"),
            }
            let pause = if quick > 0 {
                quick -= 1;
                Duration::from_millis(200)
            } else {
                Duration::from_secs(2)
            };
            tokio::time::sleep(pause).await;
        }
    });
    rx
}

/// Connection attempts 200 ms apart after a start or a lost connection.
const QUICK_RETRIES: u8 = 10;

async fn follow(
    socket: &PathBuf,
    watched: &[(IpAddr, u8)],
    tx: &mpsc::Sender<MonitorEvent>,
) -> std::io::Result<()> {
    let mut stream = UnixStream::connect(socket).await?;
    // babeld tells a new monitor of every neighbour: start afresh.
    let mut usable = Usable::default();
    stream.write_all(b"monitor\n").await?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 || (n == MAX_LINE && line.last() != Some(&b'\n')) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        let Some(seen) = seen(text) else { continue };
        if let Some(iface) = usable.on_seen(&seen) {
            // Not to be lost (each is worth a table exchange): waited for.
            if tx.send(MonitorEvent::NeighbourUsable(iface)).await.is_err() {
                return Ok(());
            }
        }
        // Coalesced: one pending is enough.
        if link_change(&seen, watched)
            && tx.try_send(MonitorEvent::LinksChanged).is_err()
            && tx.is_closed()
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_neighbours_coming_and_going_count() {
        let add = "add neighbour 55e5 address fe80::1 if re6stnet1 reach ff00 ureach 0000 rxcost 96 txcost 96 rtt 0.2 rttcost 0 cost 96";
        assert!(is_link_change(add, &[]));
        assert!(is_link_change(&add.replacen("add", "flush", 1), &[]));
        assert!(!is_link_change(&add.replacen("add", "change", 1), &[]));
        let route = "change route 55e5 prefix 2001:db8:1::/48 from ::/0 installed yes id 44:cf metric 65535 refmetric 0 via fe80::1 if re6stnet1";
        assert!(!is_link_change(route, &[]));
        let registry = [("2001:db8:1::".parse().unwrap(), 48)];
        assert!(is_link_change(route, &registry), "the registry's route");
        let other = [("2001:db8:2::".parse().unwrap(), 48)];
        assert!(!is_link_change(route, &other));
        assert!(!is_link_change("ok", &registry));
        assert!(!is_link_change("\u{0}garbage", &registry));
    }

    #[test]
    fn a_neighbour_is_usable_once_until_flushed_or_lost() {
        let mut u = Usable::default();
        let line = |action: &str, rx: u32, tx: u32| {
            format!("{action} neighbour 55e5 address fe80::1 if re6stnet1 reach 8000 ureach 0000 rxcost {rx} txcost {tx} cost 96")
        };
        assert_eq!(u.on_line(&line("add", 65535, 65535)), None);
        assert_eq!(
            u.on_line(&line("change", 384, 65535)),
            None,
            "not heard by it yet"
        );
        assert_eq!(
            u.on_line(&line("change", 384, 96)),
            Some("re6stnet1".into())
        );
        assert_eq!(u.on_line(&line("change", 96, 96)), None, "once");
        assert_eq!(u.on_line(&line("change", 65535, 96)), None);
        assert_eq!(
            u.on_line(&line("change", 96, 96)),
            Some("re6stnet1".into()),
            "usable again"
        );
        assert_eq!(u.on_line("flush neighbour 55e5"), None);
        assert_eq!(u.on_line(&line("add", 96, 96)), Some("re6stnet1".into()));
        assert_eq!(u.on_line("garbage"), None);
    }

    #[test]
    fn a_neighbour_is_usable_again_after_its_interface_went_down() {
        // A tunnel reconnected to the same peer on the same tap: babeld
        // dropped the tap's routes while it was down, the neighbour's
        // costs never became infinite.
        let mut u = Usable::default();
        let line = |key: &str, iface: &str| {
            format!("change neighbour {key} address fe80::1 if {iface} reach ff00 ureach 0000 rxcost 96 txcost 96 cost 96")
        };
        assert_eq!(
            u.on_line(&line("55e5", "re6stnet1")),
            Some("re6stnet1".into())
        );
        assert_eq!(
            u.on_line(&line("77e7", "re6stnet2")),
            Some("re6stnet2".into())
        );
        assert_eq!(
            u.on_line("change interface re6stnet1 up true ipv6 fe80::2"),
            None
        );
        assert_eq!(u.on_line(&line("55e5", "re6stnet1")), None, "still up");
        assert_eq!(u.on_line("change interface re6stnet1 up false"), None);
        assert_eq!(
            u.on_line("change interface re6stnet1 up true ipv6 fe80::2"),
            None
        );
        assert_eq!(
            u.on_line(&line("55e5", "re6stnet1")),
            Some("re6stnet1".into()),
            "usable anew"
        );
        assert_eq!(u.on_line(&line("77e7", "re6stnet2")), None, "another tap's");
        assert_eq!(u.on_line("flush interface re6stnet2"), None);
        assert_eq!(
            u.on_line(&line("77e7", "re6stnet2")),
            Some("re6stnet2".into())
        );
    }
}
