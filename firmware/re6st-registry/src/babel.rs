//! Which nodes the registry's own node routes to: the node prefixes of
//! installed routes inside the network, from `RUN/babeld.sock`. These are
//! the candidates for `getBootstrapPeer` and the nodes `versions` and
//! `getIPv4Information` ask.
//!
//! That socket speaks one of two protocols: stock babeld's text interface
//! (it greets first), or upstream's binary one (patched babeld, or our
//! node's translation of it; the client speaks first). We listen briefly
//! for a greeting to tell them apart, so the registry works beside our
//! node, upstream's node, or a bare stock babeld.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv6Addr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use re6st_proto::babel_ctl::{self, Request, Response};
use re6st_proto::prefix::Prefix;

use crate::registry::PeerSource;

/// Node prefixes of the installed routes of a `dump` inside `network`.
pub fn parse_dump(dump: &str, network: &Prefix) -> Vec<Prefix> {
    let mut out = vec![];
    for line in dump.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.get(..2) != Some(&["add", "route"][..]) {
            continue;
        }
        let field = |name: &str| {
            words
                .iter()
                .position(|w| *w == name)
                .and_then(|i| words.get(i + 1))
                .copied()
        };
        if field("installed") != Some("yes") {
            continue;
        }
        let Some((addr, len)) = field("prefix").and_then(|p| p.split_once('/')) else {
            continue;
        };
        let (Ok(addr), Ok(len)) = (addr.parse::<Ipv6Addr>(), len.parse::<u8>()) else {
            continue;
        };
        add_node(&mut out, network, addr, len);
    }
    out
}

fn add_node(out: &mut Vec<Prefix>, network: &Prefix, addr: Ipv6Addr, len: u8) {
    let Ok(p) = Prefix::from_ipv6(addr, len) else {
        return;
    };
    if p.len() > network.len() && p.starts_with(network) {
        let node = p.suffix_from(network.len());
        if !out.contains(&node) {
            out.push(node);
        }
    }
}

/// Node prefixes of the installed routes of an upstream-protocol dump.
pub fn parse_ctl_dump(dump: &babel_ctl::Dump, network: &Prefix) -> Vec<Prefix> {
    let mut out = vec![];
    for r in &dump.routes {
        if r.flags & babel_ctl::ROUTE_INSTALLED != 0 {
            add_node(&mut out, network, r.prefix, r.plen);
        }
    }
    out
}

/// What a socket said first.
enum Dialect {
    /// Stock babeld's greeting (what was read of it).
    Text(Vec<u8>),
    /// Silence: the client is expected to speak first.
    Binary,
}

/// babeld's local interface on a Unix socket.
pub struct BabelPeers {
    pub socket: PathBuf,
    pub network: Prefix,
}

/// How long to wait for stock babeld's greeting before speaking
/// upstream's protocol.
const GREETING_WAIT: Duration = Duration::from_millis(300);

impl BabelPeers {
    fn query(&self) -> std::io::Result<Vec<Prefix>> {
        let mut s = UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(GREETING_WAIT))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut first = [0u8; 64];
        let dialect = match s.read(&mut first) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => Dialect::Text(first[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Dialect::Binary
            }
            Err(e) => return Err(e),
        };
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        match dialect {
            Dialect::Text(start) => Ok(parse_dump(&Self::text_dump(s, start)?, &self.network)),
            Dialect::Binary => Ok(parse_ctl_dump(&Self::binary_dump(s)?, &self.network)),
        }
    }

    fn binary_dump(mut s: UnixStream) -> std::io::Result<babel_ctl::Dump> {
        let mut out = vec![babel_ctl::VERSION];
        out.extend(
            Request::Dump {
                flags: babel_ctl::DUMP_INTERFACES
                    | babel_ctl::DUMP_NEIGHBOURS
                    | babel_ctl::DUMP_ROUTES,
            }
            .encode(),
        );
        s.write_all(&out)?;
        let bad = |e: babel_ctl::CtlError| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        loop {
            let mut head = [0u8; babel_ctl::HEADER_LEN];
            s.read_exact(&mut head)?;
            let (kind, len) = babel_ctl::header(&head).expect("full header");
            // A dump of a large network is a few hundred kB at most.
            if len > 16 << 20 {
                return Err(bad(babel_ctl::CtlError::TooLong(len)));
            }
            let mut body = vec![0u8; len as usize];
            s.read_exact(&mut body)?;
            if let Response::Dump(d) = Response::decode(kind, &body).map_err(bad)? {
                return Ok(d);
            }
        }
    }

    fn text_dump(s: UnixStream, start: Vec<u8>) -> std::io::Result<String> {
        let mut s = s;
        let mut r = BufReader::new(std::io::Read::chain(&start[..], s.try_clone()?));
        // Greeting, up to "ok"; then the dump, up to the next "ok".
        let mut read_block = || -> std::io::Result<String> {
            let mut block = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                match line.trim_end() {
                    "ok" => return Ok(block),
                    "no" | "bad" => return Err(std::io::Error::other("babeld refused")),
                    _ => block.push_str(&line),
                }
            }
        };
        read_block()?;
        s.write_all(b"dump\n")?;
        read_block()
    }
}

impl PeerSource for BabelPeers {
    fn peers(&self) -> Result<Vec<Prefix>, String> {
        self.query().map_err(|e| {
            format!(
                "no babeld control socket to ask at {} ({e}): -r must be the run \
                 directory (--run) of the re6st node running on the registry's host with \
                 the registry's own certificate (the first one issued), and that node must \
                 be running",
                self.socket.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_inside_the_network() {
        let network = Prefix::from_ipv6("2001:db8::".parse().unwrap(), 32).unwrap();
        let dump = "\
add interface re6st-a up true ipv6 fe80::1
add neighbour 1 address fe80::2 if re6st-a reach ffff rxcost 96 txcost 96 cost 96
add route 1 prefix 2001:db8:1::/48 from ::/0 installed yes id 02:00 metric 96 refmetric 0 via fe80::2 if re6st-a
add route 2 prefix 2001:db8:2::/48 from ::/0 installed no id 02:01 metric 192 refmetric 96 via fe80::2 if re6st-a
add route 3 prefix 2001:db8:3:4000::/52 from ::/0 installed yes id 02:02 metric 192 refmetric 96 via fe80::2 if re6st-a
add route 4 prefix 2001:db9::/48 from ::/0 installed yes id 02:03 metric 96 refmetric 0 via fe80::2 if re6st-a
add route 5 prefix ::ffff:10.0.0.0/104 from ::/0 installed yes id 02:03 metric 96 refmetric 0 via fe80::2 if re6st-a
add xroute 2001:db8:5::/48-::/0 prefix 2001:db8:5::/48 from ::/0 metric 0
add route 6 prefix 2001:db8:1::/48 from ::/0 installed yes id 02:04 metric 96 refmetric 0 via fe80::3 if re6st-b
garbage
";
        let peers = parse_dump(dump, &network);
        assert_eq!(
            peers,
            vec![
                Prefix::from_subnet("1/16").unwrap(),
                // 2001:db8:3:4000::/52: 0x0003 then 0b0100 after the /32.
                Prefix::from_subnet("52/20").unwrap(),
            ]
        );
    }

    #[test]
    fn talks_to_a_babeld_socket() {
        use std::os::unix::net::UnixListener;
        let path = std::env::temp_dir().join(format!("re6st-babel-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"BABEL 1.0\nversion babeld-1.13\nhost x\nmy-id 02:00\nok\n")
                .unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut cmd = String::new();
            r.read_line(&mut cmd).unwrap();
            assert_eq!(cmd, "dump\n");
            s.write_all(
                b"add route 1 prefix 2001:db8:7::/48 from ::/0 installed yes id 1 metric 1 refmetric 0 via fe80::2 if x\nok\n",
            )
            .unwrap();
        });
        let b = BabelPeers {
            socket: path.clone(),
            network: Prefix::from_ipv6("2001:db8::".parse().unwrap(), 32).unwrap(),
        };
        assert_eq!(b.peers(), Ok(vec![Prefix::from_subnet("7/16").unwrap()]));
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
        // No babeld: why, and what to do.
        let e = b.peers().unwrap_err();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("-r must be"),
            "{e}"
        );
    }

    #[test]
    fn talks_upstreams_binary_protocol() {
        use std::os::unix::net::UnixListener;
        let path =
            std::env::temp_dir().join(format!("re6st-babel-bin-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // Silent until the client speaks: version byte, then Dump(11).
            let mut hello = [0u8; 8];
            s.read_exact(&mut hello).unwrap();
            assert_eq!(&hello, b"\x01\0\x01\0\0\0\x01\x0b");
            let route = |prefix: &str, flags| babel_ctl::Route {
                prefix: prefix.parse().unwrap(),
                plen: 48,
                metric: 96,
                smoothed_metric: 96,
                refmetric: 0,
                id: [0; 8],
                seqno: 0,
                age: 0,
                ifindex: 3,
                neigh_address: "fe80::2".parse().unwrap(),
                nexthop: "fe80::2".parse().unwrap(),
                flags,
            };
            let dump = babel_ctl::Dump {
                routes: vec![
                    route("2001:db8:7::", babel_ctl::ROUTE_INSTALLED),
                    route("2001:db8:8::", 0),
                    route("2001:db9:1::", babel_ctl::ROUTE_INSTALLED),
                ],
                ..Default::default()
            };
            s.write_all(&Response::Dump(dump).encode().unwrap())
                .unwrap();
        });
        let b = BabelPeers {
            socket: path.clone(),
            network: Prefix::from_ipv6("2001:db8::".parse().unwrap(), 32).unwrap(),
        };
        assert_eq!(b.peers(), Ok(vec![Prefix::from_subnet("7/16").unwrap()]));
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
