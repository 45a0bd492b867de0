//! The localhost relay between the registry and its own node: the
//! registry sends `PREFIX\0CODE[PAYLOAD]` to `[::1]:326` to have the node
//! send message CODE to the node PREFIX (a bit string); answers come back
//! in the same framing.

use thiserror::Error;

use crate::prefix::Prefix;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RelayError {
    #[error("relay datagram has no NUL after the prefix")]
    NoSeparator,
    #[error("relay datagram has no message code")]
    NoCode,
    #[error("relay datagram has an invalid prefix")]
    BadPrefix,
}

/// A relayed message: to (request) or from (answer) the node `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed<'a> {
    pub prefix: Prefix,
    pub code: u8,
    pub payload: &'a [u8],
}

/// Frames a relayed message.
pub fn encode(prefix: &Prefix, code: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_string().into_bytes();
    v.push(0);
    v.push(code);
    v.extend_from_slice(payload);
    v
}

/// Parses a relayed message. The prefix may not be empty.
pub fn decode(datagram: &[u8]) -> Result<Relayed<'_>, RelayError> {
    let nul = datagram
        .iter()
        .position(|&b| b == 0)
        .ok_or(RelayError::NoSeparator)?;
    let (prefix, rest) = datagram.split_at(nul);
    let prefix = std::str::from_utf8(prefix)
        .ok()
        .filter(|p| !p.is_empty())
        .and_then(|p| p.parse().ok())
        .ok_or(RelayError::BadPrefix)?;
    match rest.get(1..) {
        Some([code, payload @ ..]) => Ok(Relayed {
            prefix,
            code: *code,
            payload,
        }),
        _ => Err(RelayError::NoCode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn framing() {
        let p: Prefix = "0101".parse().unwrap();
        assert_eq!(encode(&p, 1, b""), b"0101\0\x01");
        let r = decode(b"0101\0\x01a,1,udp").unwrap();
        assert_eq!((r.prefix, r.code, r.payload), (p, 1, &b"a,1,udp"[..]));
        assert_eq!(decode(b"0101\0\x01").unwrap().payload, b"");
        assert_eq!(decode(b"\0\x01x"), Err(RelayError::BadPrefix));
        assert_eq!(decode(b"01x1\0\x01x"), Err(RelayError::BadPrefix));
        assert_eq!(decode(b"0101"), Err(RelayError::NoSeparator));
        assert_eq!(decode(b"0101\0"), Err(RelayError::NoCode));
    }

    proptest! {
        #[test]
        fn round_trip(bits in "[01]{1,128}", code in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let p: Prefix = bits.parse().unwrap();
            let d = encode(&p, code, &payload);
            let r = decode(&d).unwrap();
            prop_assert_eq!((r.prefix, r.code, r.payload), (p, code, &payload[..]));
        }

        #[test]
        fn never_panics(d in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&d);
        }
    }
}
