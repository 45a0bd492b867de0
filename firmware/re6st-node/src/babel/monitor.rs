//! babeld's `monitor` stream, reduced to "something that matters changed".
//!
//! A node below its client count backs its dumps off while they show
//! nothing new (see the tunnel manager); a neighbour that appears or goes
//! away (a tunnel's babel link, a node on the LAN) is worth a dump at once,
//! and so is any news of the route to a watched prefix (the registry's
//! node: losing it is how a node finds it is cut off). Other route lines
//! are not: in a large network some route somewhere changes every second,
//! which would bring back a dump per second.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use std::net::IpAddr;

use super::control::{parse_line, Action, Line};

/// Longest monitor line read (babeld's are < 300 bytes): a longer one
/// ends the connection, which is made again.
const MAX_LINE: usize = 4096;

/// Whether a monitor line tells of a neighbour appearing or going away,
/// or of a route to one of `watched` (a flushed route's line may name
/// no prefix: any flush counts then, they are rare).
pub fn is_link_change(raw: &str, watched: &[(IpAddr, u8)]) -> bool {
    match parse_line(raw) {
        Ok(Line::Neighbour {
            action: Action::Add | Action::Flush,
            ..
        }) => true,
        Ok(Line::Route { route, action, .. }) => match route {
            Some(r) => watched.contains(&r.prefix),
            None => action == Action::Flush && !watched.is_empty(),
        },
        _ => false,
    }
}

/// Follows babeld's monitor stream on `socket` (reconnecting when babeld
/// restarts) and sends a `()` per burst of link changes; the channel holds
/// one, so a busy babeld never queues more.
pub fn spawn(socket: PathBuf, watched: Vec<(IpAddr, u8)>) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while !tx.is_closed() {
            if let Err(e) = follow(&socket, &watched, &tx).await {
                tracing::debug!("babeld monitor: {e}");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    rx
}

async fn follow(
    socket: &PathBuf,
    watched: &[(IpAddr, u8)],
    tx: &mpsc::Sender<()>,
) -> std::io::Result<()> {
    let mut stream = UnixStream::connect(socket).await?;
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
        if is_link_change(text.trim_end(), watched) && tx.try_send(()).is_err() && tx.is_closed() {
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
}
