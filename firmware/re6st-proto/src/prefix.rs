//! Bit-string prefixes and IPv6 arithmetic.
//!
//! Upstream handles prefixes as strings of '0'/'1'. We keep them as a
//! left-aligned `u128` plus a length, which orders exactly like upstream's
//! string comparison and costs no allocation.

use std::cmp::Ordering;
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PrefixError {
    #[error("prefix longer than 128 bits ({0})")]
    TooLong(usize),
    #[error("invalid bit string {0:?}: only '0' and '1' are allowed")]
    BadBits(String),
    #[error("invalid subnet {0:?}: expected N/LEN")]
    BadSubnet(String),
    #[error("subnet {0:?}: number does not fit in its length")]
    SubnetOverflow(String),
    #[error("CA serial number must be at least 1")]
    ZeroSerial,
}

/// A sequence of up to 128 bits. Serialized as (right-aligned value, length).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "(u128, u8)", into = "(u128, u8)")]
pub struct Prefix {
    /// Bits stored from the most significant end; unused bits are zero.
    bits: u128,
    len: u8,
}

impl Prefix {
    pub const EMPTY: Prefix = Prefix { bits: 0, len: 0 };

    /// Builds a prefix of `len` bits whose value is `value` (right-aligned).
    pub fn new(value: u128, len: u8) -> Result<Self, PrefixError> {
        if len > 128 {
            return Err(PrefixError::TooLong(len.into()));
        }
        if len < 128 && value >> len != 0 {
            return Err(PrefixError::SubnetOverflow(format!("{value}/{len}")));
        }
        Ok(Prefix {
            bits: if len == 0 { 0 } else { value << (128 - len) },
            len,
        })
    }

    pub fn len(&self) -> u8 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bits as an unsigned number (right-aligned).
    pub fn value(&self) -> u128 {
        if self.len == 0 {
            0
        } else {
            self.bits >> (128 - self.len)
        }
    }

    /// The bits left-aligned in a 128-bit word (an IPv6 address with zeros
    /// after the prefix).
    pub fn left_aligned(&self) -> u128 {
        self.bits
    }

    /// Bit `i` (0 is the most significant).
    pub fn bit(&self, i: u8) -> Option<bool> {
        (i < self.len).then(|| self.bits >> (127 - i) & 1 == 1)
    }

    /// Parses upstream's CN form `N/LEN` (decimal N, at most LEN bits).
    pub fn from_subnet(subnet: &str) -> Result<Self, PrefixError> {
        let bad = || PrefixError::BadSubnet(subnet.to_owned());
        let (n, l) = subnet.split_once('/').ok_or_else(bad)?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) || l.len() > 3 {
            return Err(bad());
        }
        let len: u16 = l.parse().map_err(|_| bad())?;
        if len > 128 {
            return Err(PrefixError::TooLong(len.into()));
        }
        let value: u128 = n
            .parse()
            .map_err(|_| PrefixError::SubnetOverflow(subnet.to_owned()))?;
        Prefix::new(value, len as u8).map_err(|_| PrefixError::SubnetOverflow(subnet.to_owned()))
    }

    /// Upstream's CN form `N/LEN`.
    pub fn to_subnet(&self) -> String {
        format!("{}/{}", self.value(), self.len)
    }

    /// The network prefix encoded in a CA serial number (big-endian bytes):
    /// its binary form without the leading 1 bit.
    pub fn from_ca_serial(serial_be: &[u8]) -> Result<Self, PrefixError> {
        let digits: Vec<u8> = {
            let start = serial_be.iter().position(|&b| b != 0);
            match start {
                Some(s) => serial_be[s..].to_vec(),
                None => return Err(PrefixError::ZeroSerial),
            }
        };
        let total_bits = digits.len() * 8 - digits[0].leading_zeros() as usize;
        let len = total_bits - 1;
        if len > 128 {
            return Err(PrefixError::TooLong(len));
        }
        let mut p = Prefix::EMPTY;
        for i in 1..total_bits {
            let bit_index = total_bits - 1 - i; // from least significant
            let byte = digits[digits.len() - 1 - bit_index / 8];
            p = p.push(byte >> (bit_index % 8) & 1 == 1)?;
        }
        Ok(p)
    }

    /// The CA serial number (big-endian, minimal) that encodes this network.
    pub fn to_ca_serial(&self) -> Vec<u8> {
        let total_bits = usize::from(self.len) + 1;
        let nbytes = total_bits.div_ceil(8);
        let mut out = vec![0u8; nbytes];
        let mut set =
            |bit_from_lsb: usize| out[nbytes - 1 - bit_from_lsb / 8] |= 1 << (bit_from_lsb % 8);
        set(total_bits - 1);
        for i in 0..self.len {
            if self.bit(i) == Some(true) {
                set(usize::from(self.len - 1 - i));
            }
        }
        out
    }

    /// This prefix followed by one more bit.
    pub fn push(self, bit: bool) -> Result<Self, PrefixError> {
        if self.len == 128 {
            return Err(PrefixError::TooLong(129));
        }
        let mut bits = self.bits;
        if bit {
            bits |= 1u128 << (127 - self.len);
        }
        Ok(Prefix {
            bits,
            len: self.len + 1,
        })
    }

    /// This prefix followed by `other`.
    pub fn concat(&self, other: &Prefix) -> Result<Self, PrefixError> {
        let len = usize::from(self.len) + usize::from(other.len);
        if len > 128 {
            return Err(PrefixError::TooLong(len));
        }
        let tail = if self.len == 0 {
            other.bits
        } else if self.len == 128 {
            0
        } else {
            other.bits >> self.len
        };
        Ok(Prefix {
            bits: self.bits | tail,
            len: len as u8,
        })
    }

    /// The first `len` bits.
    pub fn truncate(&self, len: u8) -> Prefix {
        let len = len.min(self.len);
        Prefix::from_left_aligned(self.bits, len)
    }

    /// Bits `start..` of this prefix.
    pub fn suffix_from(&self, start: u8) -> Prefix {
        let start = start.min(self.len);
        let bits = if start == 128 { 0 } else { self.bits << start };
        Prefix {
            bits,
            len: self.len - start,
        }
    }

    fn from_left_aligned(bits: u128, len: u8) -> Prefix {
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        Prefix {
            bits: bits & mask,
            len,
        }
    }

    /// Whether `self` begins with `other`.
    pub fn starts_with(&self, other: &Prefix) -> bool {
        other.len <= self.len && self.truncate(other.len) == *other
    }

    /// The first `len` bits of an IPv6 address.
    pub fn from_ipv6(addr: Ipv6Addr, len: u8) -> Result<Self, PrefixError> {
        if len > 128 {
            return Err(PrefixError::TooLong(len.into()));
        }
        Ok(Prefix::from_left_aligned(u128::from(addr), len))
    }

    /// The address made of this prefix, zeros, then `suffix` in the lowest
    /// bits (upstream's `ipFromBin(prefix, suffix)`). Bits of `suffix` that
    /// overlap the prefix are ignored.
    pub fn to_ipv6_with_suffix(&self, suffix: u128) -> Ipv6Addr {
        let host_mask = if self.len == 0 {
            u128::MAX
        } else if self.len == 128 {
            0
        } else {
            u128::MAX >> self.len
        };
        Ipv6Addr::from(self.bits | (suffix & host_mask))
    }

    /// The network address of this prefix (all host bits zero).
    pub fn to_ipv6(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.bits)
    }
}

/// A node's own re6st address: network, node prefix, zeros, then 1.
pub fn node_address(network: &Prefix, node: &Prefix) -> Result<Ipv6Addr, PrefixError> {
    let full = network.concat(node)?;
    if full.len() == 128 {
        return Err(PrefixError::TooLong(129));
    }
    Ok(full.to_ipv6_with_suffix(1))
}

impl TryFrom<(u128, u8)> for Prefix {
    type Error = PrefixError;
    fn try_from((value, len): (u128, u8)) -> Result<Self, Self::Error> {
        Prefix::new(value, len)
    }
}

impl From<Prefix> for (u128, u8) {
    fn from(p: Prefix) -> Self {
        (p.value(), p.len)
    }
}

impl Ord for Prefix {
    /// Same order as upstream's comparison of '0'/'1' strings.
    fn cmp(&self, other: &Self) -> Ordering {
        self.bits.cmp(&other.bits).then(self.len.cmp(&other.len))
    }
}

impl PartialOrd for Prefix {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Prefix {
    /// Upstream's bit-string form, e.g. `0101`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in 0..self.len {
            f.write_str(if self.bit(i) == Some(true) { "1" } else { "0" })?;
        }
        Ok(())
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prefix({self})")
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// Parses upstream's bit-string form (`0101`; empty is the empty prefix).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > 128 {
            return Err(PrefixError::TooLong(s.len()));
        }
        let mut p = Prefix::EMPTY;
        for c in s.bytes() {
            p = match c {
                b'0' => p.push(false)?,
                b'1' => p.push(true)?,
                _ => return Err(PrefixError::BadBits(s.to_owned())),
            };
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn subnet_forms() {
        assert_eq!(Prefix::from_subnet("5/8").unwrap(), p("00000101"));
        assert_eq!(p("00000101").to_subnet(), "5/8");
        assert_eq!(Prefix::from_subnet("0/16").unwrap(), p("0000000000000000"));
        assert!(Prefix::from_subnet("256/8").is_err());
        assert!(Prefix::from_subnet("1/129").is_err());
        assert!(Prefix::from_subnet("x/8").is_err());
        assert!(Prefix::from_subnet("1").is_err());
        assert!(Prefix::from_subnet("-1/8").is_err());
        assert!(Prefix::from_subnet("1/").is_err());
    }

    #[test]
    fn ca_serial() {
        // 0b1_0010_0000_0000_0001 -> network "0010000000000001" (2001::/16)
        let net = Prefix::from_ca_serial(&[0x01, 0x20, 0x01]).unwrap();
        assert_eq!(net.to_string(), "0010000000000001");
        assert_eq!(net.to_ca_serial(), vec![0x01, 0x20, 0x01]);
        assert_eq!(Prefix::from_ca_serial(&[0, 1]).unwrap(), Prefix::EMPTY);
        assert!(Prefix::from_ca_serial(&[0, 0]).is_err());
        assert!(Prefix::from_ca_serial(&[]).is_err());
    }

    #[test]
    fn node_address_is_network_prefix_then_one() {
        let net = Prefix::from_ipv6("2001:db8::".parse().unwrap(), 32).unwrap();
        let node = Prefix::from_subnet("1/16").unwrap();
        assert_eq!(
            node_address(&net, &node).unwrap(),
            "2001:db8:1::1".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn ordering_matches_strings() {
        let strs = ["", "0", "00", "001", "01", "010", "1", "10", "11", "111"];
        for a in strs {
            for b in strs {
                assert_eq!(p(a).cmp(&p(b)), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn string_round_trip(s in "[01]{0,128}") {
            prop_assert_eq!(p(&s).to_string(), s);
        }

        #[test]
        fn order_like_strings(a in "[01]{0,20}", b in "[01]{0,20}") {
            prop_assert_eq!(p(&a).cmp(&p(&b)), a.cmp(&b));
        }

        #[test]
        fn subnet_round_trip(v in any::<u128>(), len in 0u8..=128) {
            let v = if len == 128 { v } else if len == 0 { 0 } else { v & ((1u128 << len) - 1) };
            let pre = Prefix::new(v, len).unwrap();
            prop_assert_eq!(Prefix::from_subnet(&pre.to_subnet()).unwrap(), pre);
        }

        #[test]
        fn serial_round_trip(s in "[01]{0,128}") {
            let pre = p(&s);
            prop_assert_eq!(Prefix::from_ca_serial(&pre.to_ca_serial()).unwrap(), pre);
        }

        #[test]
        fn concat_then_split(a in "[01]{0,64}", b in "[01]{0,64}") {
            let ab = p(&a).concat(&p(&b)).unwrap();
            prop_assert_eq!(ab.to_string(), format!("{a}{b}"));
            prop_assert_eq!(ab.truncate(a.len() as u8), p(&a));
            prop_assert_eq!(ab.suffix_from(a.len() as u8), p(&b));
            prop_assert!(ab.starts_with(&p(&a)));
        }
    }
}
