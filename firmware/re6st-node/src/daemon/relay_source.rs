//! Who may drive the registry relay: a datagram from a loopback address is
//! the registry's only if the socket it came from belongs to root or to
//! the node's own user (the registry runs as one of them, ours and
//! upstream's alike). Any other local process could otherwise make the
//! node send to prefixes of its choosing. The owner is looked up in the
//! kernel's socket tables (`/proc/net/udp6`, `/proc/net/udp`) by the
//! datagram's source address and port.

use std::net::{IpAddr, SocketAddr};

/// The uids of the UDP sockets bound to `from` (its port, and its address
/// or the unspecified one) in a `/proc/net/udp{,6}` table.
pub fn owners(table: &str, from: SocketAddr) -> Vec<u32> {
    let port = format!("{:04X}", from.port());
    let (exact, any) = match from.ip() {
        IpAddr::V4(a) => (
            proc_v4(a.octets()),
            proc_v4(std::net::Ipv4Addr::UNSPECIFIED.octets()),
        ),
        IpAddr::V6(a) => (
            proc_v6(a.octets()),
            proc_v6(std::net::Ipv6Addr::UNSPECIFIED.octets()),
        ),
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (addr, p) = words.get(1)?.split_once(':')?;
            if p != port || (addr != exact && addr != any) {
                return None;
            }
            words.get(7)?.parse().ok()
        })
        .collect()
}

/// An IPv4 address as the kernel prints it: one 32-bit word in host order.
fn proc_v4(octets: [u8; 4]) -> String {
    format!("{:08X}", u32::from_ne_bytes(octets))
}

/// An IPv6 address as the kernel prints it: four 32-bit words, each in
/// host order.
fn proc_v6(octets: [u8; 16]) -> String {
    octets
        .chunks(4)
        .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
        .collect()
}

/// Whether a datagram from `from` (a loopback address) comes from a socket
/// of root's or of `our_uid`'s. Unknown (the socket is gone, the tables
/// cannot be read): no.
pub fn trusted(from: SocketAddr, our_uid: u32) -> bool {
    let from = SocketAddr::new(from.ip().to_canonical(), from.port());
    let tables: &[&str] = match from.ip() {
        // A dual-stack socket sends IPv4 from the IPv6 table too.
        IpAddr::V4(_) => &["/proc/net/udp", "/proc/net/udp6"],
        IpAddr::V6(_) => &["/proc/net/udp6"],
    };
    let mut uids = Vec::new();
    for t in tables {
        let Ok(text) = std::fs::read_to_string(t) else {
            continue;
        };
        uids.extend(owners(&text, from));
        if let (IpAddr::V4(a), true) = (from.ip(), t.ends_with('6')) {
            let mapped = SocketAddr::new(IpAddr::V6(a.to_ipv6_mapped()), from.port());
            uids.extend(owners(&text, mapped));
        }
    }
    !uids.is_empty() && uids.iter().all(|u| *u == 0 || *u == our_uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as the kernel writes them (little-endian host).
    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
        \x20 10: 00000000000000000000000001000000:C350 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1001 2 0000000000000000 0\n\
        \x20 11: 00000000000000000000000001000000:C351 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 1002 2 0000000000000000 0\n\
        \x20 12: 00000000000000000000000000000000:C352 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   107        0 1003 2 0000000000000000 0\n\
        \x20 13: B80D0120000000000000000001000000:C350 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 1004 2 0000000000000000 0\n";

    #[test]
    #[cfg(target_endian = "little")]
    fn owners_by_source_address_and_port() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        // root's socket on [::1]:50000; 2001:db8::1 port 50000 is another.
        assert_eq!(owners(UDP6, at("[::1]:50000")), vec![0]);
        assert_eq!(owners(UDP6, at("[::1]:50001")), vec![1000]);
        // Bound to [::]: its datagrams come from ::1 too.
        assert_eq!(owners(UDP6, at("[::1]:50002")), vec![107]);
        assert_eq!(owners(UDP6, at("[2001:db8::1]:50000")), vec![1000]);
        assert!(owners(UDP6, at("[::1]:50003")).is_empty());
        assert_eq!(proc_v4([127, 0, 0, 1]), "0100007F");
    }

    /// A socket of this test's own (a user's: not root, unless the test
    /// runs as root, which then owns it and is trusted either way) is
    /// found in the kernel's table; a port nobody holds is not trusted.
    #[test]
    fn a_live_socket_is_found_and_judged_by_its_owner() {
        let s = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let from = s.local_addr().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert!(trusted(from, me));
        assert!(trusted(from, u32::MAX) == (me == 0));
        drop(s);
        assert!(!trusted(from, me));
    }
}
