//! Talking to nodes through the registry's own local node, over its
//! localhost UDP relay (`[::1]:326`): a datagram `PREFIX\0CODE[DATA]`
//! asks the node to send message CODE to the node whose prefix is PREFIX
//! (a bit string); answers come back as `PREFIX\0CODE DATA`.
//!
//! Codes used here: 0 new network version (no answer), 1 address, 4 node
//! version, 5 tunnel topology.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use re6st_proto::prefix::Prefix;

pub const CODE_VERSION: u8 = 0;
pub const CODE_ADDRESS: u8 = 1;
pub const CODE_INFO: u8 = 4;
pub const CODE_TOPOLOGY: u8 = 5;

/// How long to wait for answers.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// A relay request for `prefix`.
pub fn encode(prefix: &Prefix, code: u8) -> Vec<u8> {
    re6st_proto::relay::encode(prefix, code, &[])
}

/// A relay answer with the expected code: (prefix, data).
pub fn decode(datagram: &[u8], code: u8) -> Option<(Prefix, String)> {
    let r = re6st_proto::relay::decode(datagram).ok()?;
    (r.code == code).then(|| (r.prefix, String::from_utf8_lossy(r.payload).into_owned()))
}

/// The UDP socket to the local node; one exchange at a time, so that
/// answers are not mixed between callers.
pub struct Relay {
    socket: Mutex<UdpSocket>,
    node: SocketAddr,
    timeout: Duration,
}

impl Relay {
    pub fn new(node: SocketAddr, timeout: Duration) -> std::io::Result<Relay> {
        let bind: SocketAddr = if node.is_ipv6() {
            "[::]:0".parse().map_err(std::io::Error::other)?
        } else {
            "0.0.0.0:0".parse().map_err(std::io::Error::other)?
        };
        let socket = UdpSocket::bind(bind)?;
        Ok(Relay {
            socket: Mutex::new(socket),
            node,
            timeout,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UdpSocket> {
        self.socket.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the node with `prefix` (normally our own node) about a new
    /// network version. Best effort.
    /// Where the local node is expected.
    pub fn node(&self) -> SocketAddr {
        self.node
    }

    pub fn notify_version(&self, prefix: &Prefix) {
        if let Err(e) = self
            .lock()
            .send_to(&encode(prefix, CODE_VERSION), self.node)
        {
            tracing::info!("cannot notify the local node: {e}");
        }
    }

    /// Receives answers with `code` until `deadline`.
    fn recv_until(socket: &UdpSocket, code: u8, deadline: Instant) -> Option<(Prefix, String)> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
                return None;
            }
            match socket.recv(&mut buf) {
                Ok(n) => {
                    if let Some(answer) = buf.get(..n).and_then(|d| decode(d, code)) {
                        return Some(answer);
                    }
                    tracing::info!("relay: ignored unexpected datagram");
                }
                Err(_) => return None,
            }
        }
    }

    /// The address list (`ip,port,proto[,country];...`) of a node.
    pub fn query_address(&self, prefix: &Prefix) -> Option<String> {
        let socket = self.lock();
        socket
            .send_to(&encode(prefix, CODE_ADDRESS), self.node)
            .ok()?;
        let deadline = Instant::now() + self.timeout;
        // Answers to earlier, timed-out queries may still arrive.
        loop {
            let (p, msg) = Self::recv_until(&socket, CODE_ADDRESS, deadline)?;
            if p == *prefix {
                return Some(msg);
            }
        }
    }

    /// Version string of each node, `None` for those that did not answer.
    pub fn versions(&self, peers: &BTreeSet<Prefix>) -> BTreeMap<Prefix, Option<String>> {
        let socket = self.lock();
        let mut out: BTreeMap<Prefix, Option<String>> = BTreeMap::new();
        for p in peers {
            out.insert(*p, None);
            let _ = socket.send_to(&encode(p, CODE_INFO), self.node);
        }
        while let Some((p, v)) = Self::recv_until(&socket, CODE_INFO, Instant::now() + self.timeout)
        {
            out.insert(p, Some(v));
        }
        out
    }

    /// The tunnel graph, explored from `start`: for each node (`N/LEN`),
    /// the nodes it connects to; key `""` lists every node that answered.
    pub fn topology(&self, start: &Prefix) -> BTreeMap<String, BTreeSet<String>> {
        let socket = self.lock();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut pending: VecDeque<String> = VecDeque::from([start.to_subnet()]);
        loop {
            while let Some(subnet) = pending.pop_front() {
                if let Ok(p) = Prefix::from_subnet(&subnet) {
                    let _ = socket.send_to(&encode(&p, CODE_TOPOLOGY), self.node);
                }
            }
            let Some((p, msg)) =
                Self::recv_until(&socket, CODE_TOPOLOGY, Instant::now() + self.timeout)
            else {
                break;
            };
            let node = p.to_subnet();
            let mut words = msg.split_whitespace();
            let Some(Ok(n)) = words.next().map(str::parse::<usize>) else {
                continue;
            };
            let neighbours: Vec<String> = words.map(str::to_owned).collect();
            if n > neighbours.len() || neighbours.contains(&node) {
                continue;
            }
            // The first n are its client tunnels, the rest those it serves.
            let (clients, served) = neighbours.split_at(n);
            for x in &neighbours {
                if !graph.contains_key(x) && !pending.contains(x) {
                    pending.push_back(x.clone());
                }
            }
            graph
                .entry(node.clone())
                .or_default()
                .extend(clients.iter().cloned());
            for s in served {
                graph.entry(s.clone()).or_default().insert(node.clone());
            }
            graph.entry(String::new()).or_default().insert(node);
        }
        graph
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        let p: Prefix = "0101".parse().unwrap();
        assert_eq!(encode(&p, 1), b"0101\0\x01");
        assert_eq!(decode(b"0101\0\x01a,1,udp", 1), Some((p, "a,1,udp".into())));
        assert_eq!(decode(b"0101\0\x01", 1), Some((p, String::new())));
        assert_eq!(decode(b"0101\0\x02x", 1), None);
        assert_eq!(decode(b"\0\x01x", 1), None);
        assert_eq!(decode(b"01x1\0\x01x", 1), None);
        assert_eq!(decode(b"0101", 1), None);
        assert_eq!(decode(b"0101\0", 1), None);
    }
}
