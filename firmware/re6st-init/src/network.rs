//! The router's network set-up, planned from the profile: sysctls, the
//! commands for a static WAN, the DHCP client service for a dynamic one,
//! and the test for "network is up" (a default route exists). Pure; the
//! runtime runs the plan.

use std::fmt::Write as _;

use crate::profile::{Profile, ServiceSpec, WanMode};

/// Name of the supervised DHCP client service.
pub const DHCP_SERVICE: &str = "wan-dhcp";

/// `/proc/sys` settings, relative to `/proc/sys`.
pub fn sysctls(profile: &Profile) -> Vec<(String, &'static str)> {
    let mut s = vec![
        ("net/ipv4/ip_forward".to_owned(), "1"),
        ("net/ipv6/conf/all/forwarding".to_owned(), "1"),
        ("net/ipv6/conf/default/forwarding".to_owned(), "1"),
    ];
    if let Some(wan) = &profile.wan {
        // A forwarding interface ignores router advertisements unless told
        // otherwise, and the WAN may well get its IPv6 route from one.
        s.push((format!("net/ipv6/conf/{}/accept_ra", wan.interface), "2"));
    }
    s
}

/// What to do at boot for the WAN and LAN.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetPlan {
    /// Commands to run once, in order (busybox `ip`).
    pub commands: Vec<Vec<String>>,
    /// Content of `/run/resolv.conf` (the image links /etc/resolv.conf to it).
    pub resolv_conf: Option<String>,
    /// Services to supervise (the DHCP client).
    pub services: Vec<ServiceSpec>,
}

fn cmd(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

pub fn plan(profile: &Profile) -> NetPlan {
    let mut p = NetPlan::default();
    if let Some(lan) = &profile.lan {
        p.commands
            .push(cmd(&["ip", "link", "set", "dev", lan, "up"]));
    }
    let Some(wan) = &profile.wan else {
        return p;
    };
    let dev = wan.interface.as_str();
    p.commands
        .push(cmd(&["ip", "link", "set", "dev", dev, "up"]));
    match &wan.mode {
        WanMode::Dhcp => p.services.push(ServiceSpec {
            name: DHCP_SERVICE.to_owned(),
            // Foreground, retry forever; busybox's default script applies
            // the lease.
            argv: cmd(&["udhcpc", "-f", "-t", "0", "-i", dev]),
            after: Vec::new(),
        }),
        WanMode::Static {
            addresses,
            gateway,
            dns,
        } => {
            for a in addresses {
                let a = a.to_string();
                p.commands.push(cmd(&["ip", "addr", "add", &a, "dev", dev]));
            }
            if let Some(gw) = gateway {
                let family = if gw.is_ipv4() { "-4" } else { "-6" };
                let gw = gw.to_string();
                p.commands.push(cmd(&[
                    "ip", family, "route", "add", "default", "via", &gw, "dev", dev,
                ]));
            }
            if !dns.is_empty() {
                let mut text = String::new();
                for d in dns {
                    let _ = writeln!(text, "nameserver {d}");
                }
                p.resolv_conf = Some(text);
            }
        }
    }
    p
}

/// Whether `/proc/net/route` or `/proc/net/ipv6_route` shows a default
/// route that is up.
pub fn has_default_route(ipv4_routes: &str, ipv6_routes: &str) -> bool {
    const RTF_UP: u32 = 0x1;
    let v4 = ipv4_routes.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        match (f.get(1), f.get(3), f.get(7)) {
            (Some(&dest), Some(flags), Some(&mask)) => {
                dest == "00000000"
                    && mask == "00000000"
                    && u32::from_str_radix(flags, 16).is_ok_and(|fl| fl & RTF_UP != 0)
            }
            _ => false,
        }
    });
    // ipv6_route: dest, dest_len, src, src_len, next hop, metric, refcnt,
    // use, flags, device. The kernel lists unreachable defaults on lo.
    let zero = "0".repeat(32);
    let v6 = ipv6_routes.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        match (f.first(), f.get(1), f.get(8), f.get(9)) {
            (Some(&dest), Some(&len), Some(flags), Some(&dev)) => {
                dest == zero
                    && len == "00"
                    && dev != "lo"
                    && u32::from_str_radix(flags, 16).is_ok_and(|fl| fl & RTF_UP != 0)
            }
            _ => false,
        }
    });
    v4 || v6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{parse_file, resolve, Source};

    fn profile(text: &str) -> Profile {
        resolve(&[parse_file(Source::BoardDefaults, text).unwrap()]).unwrap()
    }

    fn lines(p: &NetPlan) -> Vec<String> {
        p.commands.iter().map(|c| c.join(" ")).collect()
    }

    #[test]
    fn dhcp_wan_runs_udhcpc() {
        let p = plan(&profile("wan=eth0\nlan=eth1\n"));
        assert_eq!(
            lines(&p),
            ["ip link set dev eth1 up", "ip link set dev eth0 up"]
        );
        assert_eq!(p.services.len(), 1);
        assert_eq!(p.services[0].name, DHCP_SERVICE);
        assert_eq!(p.services[0].argv.join(" "), "udhcpc -f -t 0 -i eth0");
        assert_eq!(p.resolv_conf, None);
    }

    #[test]
    fn static_wan_commands() {
        let p = plan(&profile(
            "wan=eth0\nwan.mode=static\nwan.address=192.0.2.2/24,2001:db8::2/64\n\
             wan.gateway=2001:db8::1\nwan.dns=192.0.2.53\n",
        ));
        assert_eq!(
            lines(&p),
            [
                "ip link set dev eth0 up",
                "ip addr add 192.0.2.2/24 dev eth0",
                "ip addr add 2001:db8::2/64 dev eth0",
                "ip -6 route add default via 2001:db8::1 dev eth0",
            ]
        );
        assert!(p.services.is_empty());
        assert_eq!(p.resolv_conf.as_deref(), Some("nameserver 192.0.2.53\n"));
    }

    #[test]
    fn no_interfaces_no_plan() {
        assert_eq!(plan(&profile("")), NetPlan::default());
    }

    #[test]
    fn sysctls_enable_forwarding_and_ras_on_wan() {
        let s = sysctls(&profile("wan=eth0"));
        assert!(s.contains(&("net/ipv6/conf/all/forwarding".into(), "1")));
        assert!(s.contains(&("net/ipv4/ip_forward".into(), "1")));
        assert!(s.contains(&("net/ipv6/conf/eth0/accept_ra".into(), "2")));
        assert_eq!(sysctls(&profile("")).len(), 3);
    }

    const V4_HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn default_routes() {
        let v4_default = format!(
            "{V4_HEADER}eth0\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        );
        let v4_local =
            format!("{V4_HEADER}eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
        let v6_default = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n";
        let v6_unreachable = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert!(has_default_route(&v4_default, ""));
        assert!(!has_default_route(&v4_local, v6_unreachable));
        assert!(has_default_route(&v4_local, v6_default));
        assert!(!has_default_route("", ""));
        assert!(!has_default_route(V4_HEADER, "garbage\n"));
    }

    proptest::proptest! {
        #[test]
        fn route_parsing_never_panics(a in "\\PC{0,300}", b in "\\PC{0,300}") {
            let _ = has_default_route(&a, &b);
        }
    }
}
