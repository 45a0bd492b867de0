//! Peer messages between simulated nodes, as re6st-proto encodes them
//! (code byte, then data). Each datagram would also carry a 4-byte
//! sequence number and a 20-byte HMAC-SHA1 ([`re6st_proto::peer`]); they
//! are counted in the bytes, not computed: no session keys are simulated.

use re6st_proto::message::{Code, Message};
use re6st_proto::peer::HMAC_LEN;
use serde::Serialize;

/// Framing around a payload: sequence number and HMAC.
pub const FRAMING: usize = 4 + HMAC_LEN;

/// Encodes a message the way a node puts it in a datagram.
pub fn encode(code: Code, data: &[u8]) -> Vec<u8> {
    Message {
        code,
        forward: false,
        data,
    }
    .encode()
}

/// Peer protocol traffic, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PeerTraffic {
    pub address_queries: u64,
    pub address_answers: u64,
    pub kill_requests: u64,
    pub kill_answers: u64,
    /// Network version announcements (code 0), every 30 s to each tunnel
    /// peer: counted, not delivered (they do not drive the manager).
    pub version_announcements: u64,
    /// Empty datagrams: what a node without address (NATed) answers to an
    /// address query, as upstream does.
    pub keepalives: u64,
    /// Address queries between two address-less nodes. Our daemon's peer
    /// link answers a query with its address even when it has none, i.e.
    /// with an empty code-1 message, which the other side takes for a
    /// query: between two NATed nodes that ping-pong never ends. The
    /// simulator answers as upstream (a keep-alive) and counts the cases.
    pub address_ping_pongs: u64,
    /// Datagrams dropped because their destination was dead or cut off.
    pub undeliverable: u64,
    /// Bytes of all the datagrams above, framing included (no UDP/IP).
    pub bytes: u64,
}

impl PeerTraffic {
    /// Counts a datagram about to be sent.
    pub fn sent(&mut self, payload: &[u8]) {
        self.bytes += (payload.len() + FRAMING) as u64;
        let Ok(m) = Message::decode(payload) else {
            self.keepalives += 1;
            return;
        };
        match m.code {
            Code::Address if m.data.is_empty() => self.address_queries += 1,
            Code::Address => self.address_answers += 1,
            Code::KillRequest => self.kill_requests += 1,
            Code::KillResponse => self.kill_answers += 1,
            Code::Version => self.version_announcements += 1,
            _ => {}
        }
    }

    pub fn messages(&self) -> u64 {
        self.address_queries
            + self.address_answers
            + self.kill_requests
            + self.kill_answers
            + self.version_announcements
            + self.keepalives
    }

    pub fn minus(&self, o: &PeerTraffic) -> PeerTraffic {
        PeerTraffic {
            address_queries: self.address_queries - o.address_queries,
            address_answers: self.address_answers - o.address_answers,
            kill_requests: self.kill_requests - o.kill_requests,
            kill_answers: self.kill_answers - o.kill_answers,
            version_announcements: self.version_announcements - o.version_announcements,
            keepalives: self.keepalives - o.keepalives,
            address_ping_pongs: self.address_ping_pongs - o.address_ping_pongs,
            undeliverable: self.undeliverable - o.undeliverable,
            bytes: self.bytes - o.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_code() {
        let mut t = PeerTraffic::default();
        t.sent(&encode(Code::Address, b""));
        t.sent(&encode(Code::Address, b"198.18.0.1,1194,udp"));
        t.sent(&[Code::KillRequest as u8]);
        t.sent(&[Code::KillResponse as u8]);
        t.sent(b"");
        assert_eq!(
            (
                t.address_queries,
                t.address_answers,
                t.kill_requests,
                t.kill_answers
            ),
            (1, 1, 1, 1)
        );
        assert_eq!((t.messages(), t.keepalives), (5, 1));
        assert_eq!(t.bytes, (1 + 20 + 1 + 1 + 5 * FRAMING) as u64);
    }
}
