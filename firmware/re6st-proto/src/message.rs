//! Payloads of authenticated peer messages: one code byte, then data.
//! The high bit of the code asks the receiver to forward the answer to the
//! registry's relay (see [`crate::relay`]).

use thiserror::Error;

/// Message codes (upstream `_processPacket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Network version: empty to ask, a signed version blob to announce.
    Version = 0,
    /// Address list: empty to ask, `ip,port,proto[,country];...` to answer.
    Address = 1,
    /// Tunnel kill request (from the client side of a tunnel).
    KillRequest = 2,
    /// Tunnel kill response (the tunnel is drained: close it).
    KillResponse = 3,
    /// Node information: empty to ask, version text to answer.
    Info = 4,
    /// Topology for the registry: `N p1 p2...` (N client tunnels first).
    Topology = 5,
    /// A line for the registry's log.
    Log = 7,
}

pub const FORWARD: u8 = 0x80;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    #[error("empty message")]
    Empty,
    #[error("unknown message code {0}")]
    UnknownCode(u8),
}

impl TryFrom<u8> for Code {
    type Error = MessageError;
    fn try_from(c: u8) -> Result<Self, Self::Error> {
        Ok(match c {
            0 => Code::Version,
            1 => Code::Address,
            2 => Code::KillRequest,
            3 => Code::KillResponse,
            4 => Code::Info,
            5 => Code::Topology,
            7 => Code::Log,
            c => return Err(MessageError::UnknownCode(c)),
        })
    }
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub code: Code,
    /// Answer to be relayed to the registry.
    pub forward: bool,
    pub data: &'a [u8],
}

impl<'a> Message<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, MessageError> {
        let (&c, data) = payload.split_first().ok_or(MessageError::Empty)?;
        Ok(Message {
            code: Code::try_from(c & !FORWARD)?,
            forward: c & FORWARD != 0,
            data,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1 + self.data.len());
        v.push(self.code as u8 | if self.forward { FORWARD } else { 0 });
        v.extend_from_slice(self.data);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes() {
        let m = Message::decode(b"\x81198.18.0.1,1194,udp").unwrap();
        assert_eq!(
            (m.code, m.forward, m.data),
            (Code::Address, true, &b"198.18.0.1,1194,udp"[..])
        );
        assert_eq!(Message::decode(b""), Err(MessageError::Empty));
        assert_eq!(Message::decode(b"\x06"), Err(MessageError::UnknownCode(6)));
        assert_eq!(Message::decode(b"\x00").unwrap().code, Code::Version);
    }

    proptest! {
        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(m) = Message::decode(&payload) {
                prop_assert_eq!(m.encode(), payload);
            }
        }
    }
}
