//! Which nodes the registry's own node routes to, from stock babeld's
//! local interface (the `dump` command over its Unix socket): the node
//! prefixes of installed routes inside the network. These are the
//! candidates for `getBootstrapPeer` and the nodes `versions` and
//! `getIPv4Information` ask.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv6Addr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

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
        let Ok(p) = Prefix::from_ipv6(addr, len) else {
            continue;
        };
        if p.len() > network.len() && p.starts_with(network) {
            let node = p.suffix_from(network.len());
            if !out.contains(&node) {
                out.push(node);
            }
        }
    }
    out
}

/// babeld's local interface on a Unix socket.
pub struct BabelPeers {
    pub socket: PathBuf,
    pub network: Prefix,
}

impl BabelPeers {
    fn dump(&self) -> std::io::Result<String> {
        let mut s = UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut r = BufReader::new(s.try_clone()?);
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
    fn peers(&self) -> Vec<Prefix> {
        match self.dump() {
            Ok(d) => parse_dump(&d, &self.network),
            Err(e) => {
                tracing::info!("babeld dump ({}): {e}", self.socket.display());
                vec![]
            }
        }
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
        assert_eq!(b.peers(), vec![Prefix::from_subnet("7/16").unwrap()]);
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
        // No babeld: no peers, no error.
        assert!(b.peers().is_empty());
    }
}
