//! Peer-protocol datagrams between simulated nodes, as their cores send
//! them: handshakes (sequence numbers 0 to 2), then messages (a sequence
//! number, the payload in clear, an HMAC-SHA1), counted by kind.

use re6st_proto::message::{Code, Message};
use re6st_proto::peer::HMAC_LEN;
use serde::Serialize;

/// What a datagram carries, as far as the simulator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// hello0 or hello (sequence number 0, 1 or 2).
    Handshake,
    /// A session message with this code; `empty`: no data after the code
    /// (an address query, say).
    Message { code: Code, empty: bool },
    /// A session message with no payload, or one we cannot read.
    Other,
}

/// Reads a datagram's kind (its HMAC is not checked: the receiving core
/// does that).
pub fn classify(datagram: &[u8]) -> Kind {
    let Some(seq) = datagram.get(..4) else {
        return Kind::Other;
    };
    if u32::from_be_bytes(seq.try_into().expect("4 bytes")) <= 2 {
        return Kind::Handshake;
    }
    let Some(payload) = datagram.get(4..datagram.len().saturating_sub(HMAC_LEN)) else {
        return Kind::Other;
    };
    match Message::decode(payload) {
        Ok(m) => Kind::Message {
            code: m.code,
            empty: m.data.is_empty(),
        },
        Err(_) => Kind::Other,
    }
}

/// Peer protocol traffic, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PeerTraffic {
    /// hello0s and hellos: each session costs two to four, and a hello0
    /// lost (its peer dead or cut off) is sent again 1, 2, 4... s later.
    pub handshakes: u64,
    pub address_queries: u64,
    pub address_answers: u64,
    pub kill_requests: u64,
    pub kill_answers: u64,
    /// Network version announcements (code 0): every 30 s to each tunnel
    /// peer, and to a peer when a session starts.
    pub version_announcements: u64,
    /// Other messages (keep-alives, topology...).
    pub other: u64,
    /// Datagrams dropped because their destination was dead or cut off.
    pub undeliverable: u64,
    /// Bytes of all the datagrams above (no UDP/IP headers).
    pub bytes: u64,
}

impl PeerTraffic {
    /// Counts a datagram about to be sent.
    pub fn sent(&mut self, datagram: &[u8]) {
        self.bytes += datagram.len() as u64;
        match classify(datagram) {
            Kind::Handshake => self.handshakes += 1,
            Kind::Message { code, empty } => match code {
                Code::Address if empty => self.address_queries += 1,
                Code::Address => self.address_answers += 1,
                Code::KillRequest => self.kill_requests += 1,
                Code::KillResponse => self.kill_answers += 1,
                Code::Version => self.version_announcements += 1,
                _ => self.other += 1,
            },
            Kind::Other => self.other += 1,
        }
    }

    /// Every datagram sent, handshakes included.
    pub fn messages(&self) -> u64 {
        self.handshakes
            + self.address_queries
            + self.address_answers
            + self.kill_requests
            + self.kill_answers
            + self.version_announcements
            + self.other
    }

    pub fn minus(&self, o: &PeerTraffic) -> PeerTraffic {
        PeerTraffic {
            handshakes: self.handshakes - o.handshakes,
            address_queries: self.address_queries - o.address_queries,
            address_answers: self.address_answers - o.address_answers,
            kill_requests: self.kill_requests - o.kill_requests,
            kill_answers: self.kill_answers - o.kill_answers,
            version_announcements: self.version_announcements - o.version_announcements,
            other: self.other - o.other,
            undeliverable: self.undeliverable - o.undeliverable,
            bytes: self.bytes - o.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session message as a peer sends it (the HMAC's value does not
    /// matter here).
    fn message(seqno: u32, payload: &[u8]) -> Vec<u8> {
        [&seqno.to_be_bytes()[..], payload, &[0; HMAC_LEN]].concat()
    }

    #[test]
    fn counts_by_kind() {
        let mut t = PeerTraffic::default();
        t.sent(&[0, 0, 0, 0, 0x30, 0x82]);
        t.sent(&[0, 0, 0, 2, 1, 2, 3]);
        t.sent(&message(3, &[Code::Address as u8]));
        t.sent(&message(4, b"\x01198.18.0.1,1194,udp"));
        t.sent(&message(5, &[Code::KillRequest as u8]));
        t.sent(&message(6, &[Code::KillResponse as u8]));
        t.sent(&message(7, b"\x00\x01sig"));
        t.sent(&message(8, b""));
        assert_eq!(
            (
                t.handshakes,
                t.address_queries,
                t.address_answers,
                t.kill_requests,
                t.kill_answers,
                t.version_announcements,
                t.other
            ),
            (2, 1, 1, 1, 1, 1, 1)
        );
        assert_eq!(t.messages(), 8);
        assert_eq!(
            t.bytes,
            (6 + 7 + 6 * (4 + HMAC_LEN) + 1 + 20 + 1 + 1 + 5) as u64
        );
    }
}
