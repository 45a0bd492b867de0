//! Order-preserving variable-length unsigned integers (upstream's
//! `packInteger`/`unpackInteger`).
//!
//! The 3 high bits of the first byte give the number of extra bytes `n`
//! (0..=7). Each length class starts where the previous one ends, so every
//! value has exactly one encoding and comparing encodings byte-wise
//! compares the values.

use thiserror::Error;

/// Largest encodable value.
pub const MAX: u64 = 0x2020_2020_2020_201f;

/// Longest encoding, in bytes.
pub const MAX_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PackError {
    #[error("integer {0} is larger than the packable maximum {MAX}")]
    Overflow(u64),
    #[error("empty input where a packed integer was expected")]
    Empty,
    #[error("packed integer needs {needed} bytes, only {got} available")]
    Truncated { needed: usize, got: usize },
}

/// First value of length class `n` (number of extra bytes).
const fn class_start(n: u32) -> u64 {
    let mut start = 0u64;
    let mut k = 0;
    while k < n {
        start += 32u64 << (8 * k);
        k += 1;
    }
    start
}

/// Encodes `value` into a fixed buffer; returns the buffer and the length used.
pub fn pack_array(value: u64) -> Result<([u8; MAX_LEN], usize), PackError> {
    if value > MAX {
        return Err(PackError::Overflow(value));
    }
    let mut rest = value;
    for n in 0..MAX_LEN as u32 {
        let size = 32u64 << (8 * n);
        if rest < size {
            // The 3 high bits of the (n+1)-byte big-endian word hold `n`.
            let word = rest + u64::from(n) * size;
            let be = word.to_be_bytes();
            let len = n as usize + 1;
            let mut out = [0u8; MAX_LEN];
            out[..len].copy_from_slice(&be[MAX_LEN - len..]);
            return Ok((out, len));
        }
        rest -= size;
    }
    Err(PackError::Overflow(value))
}

/// Encodes `value` (see [`MAX`]).
pub fn pack(value: u64) -> Result<Vec<u8>, PackError> {
    let (buf, len) = pack_array(value)?;
    Ok(buf[..len].to_vec())
}

/// Decodes a packed integer at the start of `input`; returns the value and
/// the number of bytes consumed.
pub fn unpack(input: &[u8]) -> Result<(u64, usize), PackError> {
    let first = *input.first().ok_or(PackError::Empty)?;
    let n = u32::from(first >> 5);
    let len = n as usize + 1;
    if input.len() < len {
        return Err(PackError::Truncated {
            needed: len,
            got: input.len(),
        });
    }
    let mut be = [0u8; MAX_LEN];
    be[MAX_LEN - len..].copy_from_slice(&input[..len]);
    let word = u64::from_be_bytes(be);
    // Strip the length tag, then shift into the class's range. Neither step
    // can overflow: the tag is exactly `n * (32 << 8n)` of `word`.
    let offset_in_class = word - (u64::from(n) * (32u64 << (8 * n)));
    Ok((class_start(n) + offset_in_class, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        assert_eq!(pack(0).unwrap(), [0]);
        assert_eq!(pack(31).unwrap(), [31]);
        assert_eq!(pack(32).unwrap(), [0x20, 0x00]);
        assert_eq!(pack(32 + 0x1fff).unwrap(), [0x3f, 0xff]);
        assert_eq!(pack(32 + 0x2000).unwrap(), [0x40, 0x00, 0x00]);
        assert_eq!(pack(MAX).unwrap(), [0xff; 8]);
    }

    #[test]
    fn class_boundaries_round_trip() {
        for n in 0..8u32 {
            let start = class_start(n);
            for v in [start, start.saturating_sub(1), start + 1] {
                let enc = pack(v).unwrap();
                assert_eq!(unpack(&enc).unwrap(), (v, enc.len()));
            }
            assert_eq!(pack(start).unwrap().len(), n as usize + 1);
        }
    }

    #[test]
    fn overflow_and_truncation() {
        assert_eq!(pack(MAX + 1), Err(PackError::Overflow(MAX + 1)));
        assert_eq!(pack(u64::MAX), Err(PackError::Overflow(u64::MAX)));
        assert_eq!(unpack(&[]), Err(PackError::Empty));
        assert_eq!(
            unpack(&[0x40, 0]),
            Err(PackError::Truncated { needed: 3, got: 2 })
        );
    }

    proptest! {
        #[test]
        fn round_trip(v in 0..=MAX, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut enc = pack(v).unwrap();
            let len = enc.len();
            enc.extend_from_slice(&tail);
            prop_assert_eq!(unpack(&enc).unwrap(), (v, len));
        }

        #[test]
        fn order_preserved(a in 0..=MAX, b in 0..=MAX) {
            prop_assert_eq!(a.cmp(&b), pack(a).unwrap().cmp(&pack(b).unwrap()));
        }

        #[test]
        fn every_encoding_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 1..9)) {
            if let Ok((v, len)) = unpack(&bytes) {
                prop_assert_eq!(pack(v).unwrap(), &bytes[..len]);
            }
        }
    }
}
