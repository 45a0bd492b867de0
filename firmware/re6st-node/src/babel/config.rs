//! The babeld command line, equivalent to upstream's (`plib.router`), for
//! stock babeld 1.12: the node redistributes its own subnet (and IPv4
//! subnet) only, installs routes with its re6st address as preferred
//! source, signs with the network's HMAC keys, handles the default route
//! source-specifically, and opens a read-write control socket (`-G`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use re6st_proto::prefix::Prefix;

/// Seconds between two hellos on our interfaces, at most. babeld takes
/// a neighbour's cost as finite only once it heard its hellos (two of
/// them without link-quality estimation, one with it) and the
/// neighbour's IHU saying it hears us: at the network's interval (4 s
/// in our tests, 15 s by default upstream) a new tunnel carried no
/// traffic for 16 to 20 s (docs/join-timeline.md). Stock babeld reads
/// the interval only when an interface comes up, so a tunnel cannot
/// start fast and slow down later without being flushed, which drops
/// its neighbour: the interval stays short for the tunnel's life, and
/// link-quality estimation keeps a neighbour through as many lost
/// seconds as two lost hellos at 4 s did (12 hellos). Full route
/// updates keep the network's pace (babeld's default, 4 hellos).
pub const TUNNEL_HELLO_MAX: u32 = 1;

#[derive(Debug, Clone)]
pub struct BabelConfig {
    /// Our re6st address and the length of our subnet.
    pub address: Ipv6Addr,
    pub subnet_len: u8,
    /// Our IPv4 payload address and prefix length, if the network has one.
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// The whole re6st network.
    pub network: Prefix,
    /// Export a default route for the network (`--gateway`).
    pub gateway: bool,
    /// Kernel supports source-specific IPv6 routes (CONFIG_IPV6_SUBTREES).
    pub ipv6_subtrees: bool,
    /// Hello interval in seconds (network configuration).
    pub hello: u32,
    /// Default interface parameters (network configuration `babel_default`).
    pub default: String,
    pub hmac_sign: Option<Vec<u8>>,
    /// `Some(empty)`: accept unsigned packets (key rotation in progress).
    pub hmac_accept: Option<Vec<u8>>,
    /// babeld's own log file (`-L`); `None`: babeld logs to its stderr,
    /// for the caller to keep (see `daemon::babel_log`).
    pub log: Option<PathBuf>,
    pub state: PathBuf,
    pub pidfile: PathBuf,
    pub control_socket: PathBuf,
    /// Extra arguments (`-B`), then the interfaces.
    pub extra: Vec<String>,
    pub interfaces: Vec<String>,
}

impl BabelConfig {
    /// The default interface parameters: ours for tunnels (see
    /// [`TUNNEL_HELLO_MAX`]), then the network's (which may override
    /// them), then the HMAC options.
    pub fn interface_defaults(&self) -> String {
        let mut d = String::from("link-quality true");
        if self.hello > TUNNEL_HELLO_MAX {
            d += &format!(
                " hello-interval {TUNNEL_HELLO_MAX} update-interval {}",
                4 * self.hello
            );
        }
        d += " ";
        d += &self.default;
        if self.hmac_sign.is_some() {
            d += " key sign";
            match &self.hmac_accept {
                Some(k) if k.is_empty() => d += " accept-bad-signatures true",
                _ => {}
            }
        }
        d.trim().to_owned()
    }

    /// The arguments of babeld (without the program name).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut c = |s: String| {
            a.push("-C".into());
            a.push(s);
        };
        c("redistribute local deny".into());
        c(format!(
            "redistribute ip {}/{} eq {}",
            self.address, self.subnet_len, self.subnet_len
        ));
        if let Some(k) = &self.hmac_sign {
            c(format!(
                "key id sign type blake2s128 value {}",
                hex::encode(k)
            ));
            if let Some(k) = self.hmac_accept.as_ref().filter(|k| !k.is_empty()) {
                c(format!(
                    "key id accept type blake2s128 value {}",
                    hex::encode(k)
                ));
            }
        }
        let defaults = self.interface_defaults();
        if !defaults.is_empty() {
            c(format!("default {defaults}"));
        }
        if let Some((ip4, len)) = self.ipv4 {
            c(format!("redistribute ip {ip4}/{len} eq {len}"));
        }
        let net = format!("{}/{}", self.network.to_ipv6(), self.network.len());
        if self.gateway {
            c(format!("redistribute ip ::/0 eq 0 src-prefix {net}"));
            // babeld leaves out routes of protocol "boot" unless told, and
            // that is what a default route added by hand or by ifupdown is.
            c(format!(
                "redistribute ip ::/0 eq 0 proto 3 src-prefix {net}"
            ));
            if !self.ipv6_subtrees {
                c(format!("in ip {net} ge {}", self.network.len()));
                c("in ip ::/0 deny".into());
            }
        } else if self.ipv6_subtrees {
            c(format!(
                "install ip ::/0 eq 0 src-ip ::/0 src-eq 0 src-prefix {net}"
            ));
        } else {
            // Without source-specific routing: take only our network's
            // default route, and never offer one.
            c("ipv6-subtrees false".into());
            c(format!(
                "in ip ::/0 eq 0 src-ip {net} src-eq {}",
                self.network.len()
            ));
            c("in ip ::/0 eq 0 src-ip ::/0 src-ge 1 deny".into());
            c("out ip ::/0 eq 0 deny".into());
        }
        c("redistribute deny".into());
        c(format!("install pref-src {}", self.address));
        if let Some((ip4, _)) = self.ipv4 {
            c(format!("install pref-src {ip4}"));
        }
        let path = |p: &PathBuf| p.display().to_string();
        let hello = self.hello.to_string();
        let mut out = vec![
            "-h".into(),
            hello.clone(),
            "-H".into(),
            hello,
            "-S".into(),
            path(&self.state),
            "-I".into(),
            path(&self.pidfile),
            "-s".into(),
            // Link detection: an interface is up for babeld only while it
            // has a carrier. A tap has one while an OpenVPN holds it, so
            // babeld drops a closed tunnel's routes and neighbour the
            // moment its OpenVPN goes, and an idle tap is not retried
            // every 2 s ("Interface ... has no link-local address").
            "-l".into(),
            "-G".into(),
            path(&self.control_socket),
        ];
        if let Some(log) = &self.log {
            out.extend(["-L".into(), path(log)]);
        }
        out.extend(a);
        out.extend(self.extra.iter().cloned());
        out.extend(self.interfaces.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BabelConfig {
        BabelConfig {
            address: "2001:db8:1::1".parse().unwrap(),
            subnet_len: 48,
            ipv4: None,
            network: Prefix::from_ipv6("2001:db8::".parse().unwrap(), 32).unwrap(),
            gateway: false,
            ipv6_subtrees: true,
            hello: 4,
            default: "max-rtt-penalty 5000 rtt-max 500 rtt-decay 125".into(),
            hmac_sign: Some(vec![0xab; 16]),
            hmac_accept: Some(vec![]),
            log: Some("/var/log/babeld.log".into()),
            state: "/var/lib/babeld.state".into(),
            pidfile: "/run/babeld.pid".into(),
            control_socket: "/run/babeld.sock".into(),
            extra: vec![],
            interfaces: vec!["re6stnet1".into()],
        }
    }

    #[test]
    fn like_upstream() {
        let a = sample().args().join("\n");
        for want in [
            "redistribute ip 2001:db8:1::1/48 eq 48",
            "key id sign type blake2s128 value abababababababababababababababab",
            "default link-quality true hello-interval 1 update-interval 16 max-rtt-penalty 5000 rtt-max 500 rtt-decay 125 key sign accept-bad-signatures true",
            "install ip ::/0 eq 0 src-ip ::/0 src-eq 0 src-prefix 2001:db8::/32",
            "install pref-src 2001:db8:1::1",
            "-G\n/run/babeld.sock",
            "-s\n-l\n",
        ] {
            assert!(a.contains(want), "{want} not in\n{a}");
        }
        assert!(a.ends_with("redistribute deny\n-C\ninstall pref-src 2001:db8:1::1\nre6stnet1"));
        let mut g = sample();
        g.gateway = true;
        assert!(g
            .args()
            .join(" ")
            .contains("redistribute ip ::/0 eq 0 src-prefix 2001:db8::/32"));
        assert!(g
            .args()
            .join(" ")
            .contains("redistribute ip ::/0 eq 0 proto 3 src-prefix 2001:db8::/32"));
    }
}
