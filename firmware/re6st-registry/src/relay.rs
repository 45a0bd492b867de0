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

/// Times `topology` asks a node that does not answer: a request crosses
/// the overlay twice (and a first message to a node waits for a peer
/// handshake), so one lost datagram would leave a live node out.
pub const TOPOLOGY_ASKS: u8 = 3;

/// Nodes `topology` asks at most: answers name the nodes to ask next, and
/// a network has at most 2^16 of them in practice (a /48 of /64s).
pub const TOPOLOGY_MAX_NODES: usize = 1 << 16;

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
    /// When answers stop coming, the nodes that did not answer are asked
    /// again, up to [`TOPOLOGY_ASKS`] times in all.
    pub fn topology(&self, start: &Prefix) -> BTreeMap<String, BTreeSet<String>> {
        let socket = self.lock();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut pending: VecDeque<String> = VecDeque::from([start.to_subnet()]);
        // Times each node was asked.
        let mut asked: BTreeMap<String, u8> = BTreeMap::new();
        loop {
            while let Some(subnet) = pending.pop_front() {
                if let Ok(p) = Prefix::from_subnet(&subnet) {
                    let _ = socket.send_to(&encode(&p, CODE_TOPOLOGY), self.node);
                }
                *asked.entry(subnet).or_default() += 1;
            }
            let Some((p, msg)) =
                Self::recv_until(&socket, CODE_TOPOLOGY, Instant::now() + self.timeout)
            else {
                let answered = graph.get("");
                pending.extend(
                    asked
                        .iter()
                        .filter(|(s, n)| {
                            **n < TOPOLOGY_ASKS && !answered.is_some_and(|a| a.contains(*s))
                        })
                        .map(|(s, _)| s.clone()),
                );
                if pending.is_empty() {
                    break;
                }
                continue;
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
                if !asked.contains_key(x)
                    && !pending.contains(x)
                    && asked.len() + pending.len() < TOPOLOGY_MAX_NODES
                {
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

    /// A node whose first answer is lost: asked again, it is in the graph.
    #[test]
    fn topology_asks_again_a_node_that_did_not_answer() {
        let node = UdpSocket::bind("127.0.0.1:0").unwrap();
        let relay = Relay::new(node.local_addr().unwrap(), Duration::from_millis(200)).unwrap();
        let (a, b): (Prefix, Prefix) = ("0001".parse().unwrap(), "0010".parse().unwrap());
        let fake = std::thread::spawn(move || {
            node.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 512];
            let mut asked_b = 0;
            while let Ok((n, from)) = node.recv_from(&mut buf) {
                let r = re6st_proto::relay::decode(&buf[..n]).unwrap();
                let answer = if r.prefix == a {
                    format!("1 {}", b.to_subnet())
                } else {
                    asked_b += 1;
                    if asked_b == 1 {
                        continue; // lost
                    }
                    "0".to_owned()
                };
                let d = re6st_proto::relay::encode(&r.prefix, CODE_TOPOLOGY, answer.as_bytes());
                node.send_to(&d, from).unwrap();
                if asked_b == 2 {
                    return asked_b;
                }
            }
            asked_b
        });
        let t = relay.topology(&a);
        assert_eq!(fake.join().unwrap(), 2, "b asked twice");
        assert_eq!(
            t[""],
            [a.to_subnet(), b.to_subnet()]
                .into_iter()
                .collect::<BTreeSet<_>>()
        );
        assert_eq!(t[&a.to_subnet()], [b.to_subnet()].into_iter().collect());
    }

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
