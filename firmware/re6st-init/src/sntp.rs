//! A minimal SNTPv4 client (RFC 4330): one request, one answer, the
//! server's transmit time corrected by half the round trip. Good enough to
//! set a router's clock to within a fraction of a second; the packet
//! handling is pure and the query is bounded in time.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tokio::net::UdpSocket;

pub const PACKET_LEN: usize = 48;
pub const PORT: u16 = 123;

/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
const ERA_SECONDS: u64 = 1 << 32;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SntpError {
    #[error("reply of {0} bytes, expected at least {PACKET_LEN}")]
    Short(usize),
    #[error("not a server reply (mode {0})")]
    NotServer(u8),
    #[error("server is not synchronized")]
    Unsynchronized,
    #[error("kiss-o'-death or invalid stratum {0}")]
    BadStratum(u8),
    #[error("reply does not answer our request")]
    WrongOrigin,
    #[error("server sent no time")]
    NoTime,
}

/// A client request whose transmit timestamp is `nonce`: the server echoes
/// it as its origin timestamp, which ties the answer to our request (the
/// clock being unknown, a random nonce serves better than the time).
pub fn request(nonce: u64) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = 0b00_100_011; // LI 0, version 4, mode 3 (client)
    p[40..48].copy_from_slice(&nonce.to_be_bytes());
    p
}

fn field(reply: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = reply.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_be_bytes(b)
}

/// NTP 64-bit timestamp to Unix time. Seconds below 2^31 are taken as era 1
/// (after 2036-02-07), as RFC 4330 section 3 suggests.
fn to_system_time(ts: u64) -> Option<SystemTime> {
    let secs = ts >> 32;
    let frac = ts & 0xffff_ffff;
    let secs = if secs & 0x8000_0000 == 0 {
        secs + ERA_SECONDS
    } else {
        secs
    };
    let unix = secs.checked_sub(NTP_UNIX_OFFSET)?;
    let nanos = (frac * 1_000_000_000) >> 32;
    UNIX_EPOCH.checked_add(Duration::new(unix, u32::try_from(nanos).ok()?))
}

/// Checks a reply to the request made with `nonce` and returns the server's
/// transmit time.
pub fn parse_reply(reply: &[u8], nonce: u64) -> Result<SystemTime, SntpError> {
    let head = *reply.first().ok_or(SntpError::Short(0))?;
    if reply.len() < PACKET_LEN {
        return Err(SntpError::Short(reply.len()));
    }
    let mode = head & 0b111;
    if mode != 4 {
        return Err(SntpError::NotServer(mode));
    }
    if head >> 6 == 3 {
        return Err(SntpError::Unsynchronized);
    }
    let stratum = reply.get(1).copied().unwrap_or(0);
    if !(1..=15).contains(&stratum) {
        return Err(SntpError::BadStratum(stratum));
    }
    if field(reply, 24) != nonce {
        return Err(SntpError::WrongOrigin);
    }
    let transmit = field(reply, 40);
    if transmit == 0 {
        return Err(SntpError::NoTime);
    }
    to_system_time(transmit).ok_or(SntpError::NoTime)
}

#[derive(Debug, Error)]
pub enum QueryError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: no address")]
    NoAddress(String),
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
    #[error("{0}: {1}")]
    Bad(String, SntpError),
}

fn random_nonce() -> u64 {
    let mut b = [0u8; 8];
    if openssl::rand::rand_bytes(&mut b).is_err() {
        // Weaker, but an origin check needs uniqueness more than secrecy.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        b = (u64::from(nanos) << 32 | u64::from(std::process::id())).to_be_bytes();
    }
    u64::from_be_bytes(b)
}

/// Asks `server` (`host` or `host:port`) for the time.
pub async fn query(server: &str, timeout: Duration) -> Result<SystemTime, QueryError> {
    let name = server.to_owned();
    tokio::time::timeout(timeout, query_inner(server))
        .await
        .map_err(|_| QueryError::Timeout(name, timeout))?
}

async fn query_inner(server: &str) -> Result<SystemTime, QueryError> {
    let io = |e| QueryError::Io(server.to_owned(), e);
    let target = if server.parse::<SocketAddr>().is_ok()
        || server
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
    {
        server.to_owned()
    } else if server.contains(':') {
        format!("[{}]:{PORT}", server.trim_matches(['[', ']']))
    } else {
        format!("{server}:{PORT}")
    };
    let addr: SocketAddr = tokio::net::lookup_host(&target)
        .await
        .map_err(io)?
        .next()
        .ok_or_else(|| QueryError::NoAddress(server.to_owned()))?;
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| QueryError::NoAddress(server.to_owned()))?
    } else {
        "[::]:0"
            .parse()
            .map_err(|_| QueryError::NoAddress(server.to_owned()))?
    };
    let sock = UdpSocket::bind(local).await.map_err(io)?;
    sock.connect(addr).await.map_err(io)?;
    let nonce = random_nonce();
    let sent = std::time::Instant::now();
    sock.send(&request(nonce)).await.map_err(io)?;
    let mut buf = [0u8; 512];
    loop {
        let n = sock.recv(&mut buf).await.map_err(io)?;
        match parse_reply(buf.get(..n).unwrap_or_default(), nonce) {
            // A stray or spoofed datagram: keep waiting for ours.
            Err(SntpError::WrongOrigin) => continue,
            Err(e) => return Err(QueryError::Bad(server.to_owned(), e)),
            Ok(t) => {
                // Half the round trip: the answer's age on arrival.
                return t
                    .checked_add(sent.elapsed() / 2)
                    .ok_or(QueryError::Bad(server.to_owned(), SntpError::NoTime));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server reply for `nonce` with transmit time `unix` seconds.
    fn reply(nonce: u64, unix: u64, frac: u32) -> [u8; PACKET_LEN] {
        let mut p = [0u8; PACKET_LEN];
        p[0] = 0b00_100_100;
        p[1] = 2;
        p[24..32].copy_from_slice(&nonce.to_be_bytes());
        let ntp = ((unix + NTP_UNIX_OFFSET) % ERA_SECONDS) << 32 | u64::from(frac);
        p[40..48].copy_from_slice(&ntp.to_be_bytes());
        p
    }

    #[test]
    fn request_layout() {
        let r = request(0x0102_0304_0506_0708);
        assert_eq!(r[0], 0x23);
        assert!(r[1..40].iter().all(|b| *b == 0));
        assert_eq!(r[40..], [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn parses_a_reply() {
        let t = parse_reply(&reply(42, 1_700_000_000, 1 << 31), 42).unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_millis(1_700_000_000_500));
    }

    #[test]
    fn era_one_after_2036() {
        // 2040-01-01 (Unix 2208988800) falls in NTP era 1.
        let y2040 = 2_208_988_800;
        let t = parse_reply(&reply(1, y2040, 0), 1).unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(y2040));
    }

    #[test]
    fn rejects_bad_replies() {
        let good = reply(7, 1_700_000_000, 0);
        assert_eq!(parse_reply(&good[..47], 7), Err(SntpError::Short(47)));
        assert_eq!(parse_reply(&[], 7), Err(SntpError::Short(0)));
        assert_eq!(parse_reply(&good, 8), Err(SntpError::WrongOrigin));
        let mut p = good;
        p[0] = 0x23;
        assert_eq!(parse_reply(&p, 7), Err(SntpError::NotServer(3)));
        let mut p = good;
        p[0] |= 0xc0;
        assert_eq!(parse_reply(&p, 7), Err(SntpError::Unsynchronized));
        for stratum in [0, 16, 255] {
            let mut p = good;
            p[1] = stratum;
            assert_eq!(parse_reply(&p, 7), Err(SntpError::BadStratum(stratum)));
        }
        let mut p = good;
        p[40..48].fill(0);
        assert_eq!(parse_reply(&p, 7), Err(SntpError::NoTime));
    }

    #[tokio::test]
    async fn queries_a_loopback_server() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let (n, peer) = server.recv_from(&mut buf).unwrap();
            assert_eq!(n, PACKET_LEN);
            let nonce = u64::from_be_bytes(buf[40..48].try_into().unwrap());
            // A stray answer first: the client must skip it.
            server.send_to(&reply(nonce ^ 1, 1, 0), peer).unwrap();
            server
                .send_to(&reply(nonce, 1_800_000_000, 0), peer)
                .unwrap();
        });
        let t = query(&addr.to_string(), Duration::from_secs(5))
            .await
            .unwrap();
        let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!((1_800_000_000..1_800_000_005).contains(&secs), "{secs}");
        thread.join().unwrap();
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let err = query(&addr, Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(err, QueryError::Timeout(..)), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..100), nonce in proptest::num::u64::ANY) {
            let _ = parse_reply(&data, nonce);
        }

        #[test]
        fn unix_times_round_trip(unix in 0u64..4_000_000_000) {
            let t = parse_reply(&reply(3, unix, 0), 3).unwrap();
            proptest::prop_assert_eq!(t, UNIX_EPOCH + Duration::from_secs(unix));
        }
    }
}
