//! What `re6st ctl status` shows: the node's state as JSON (served by the
//! daemon on `RUN/ctl.sock`) and its human-readable rendering.

pub mod ctl;
pub mod metrics;
pub mod system;
#[cfg(feature = "topology")]
pub mod topology;

use serde::{Deserialize, Serialize};

use re6st_proto::civil::date;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub network: String,
    pub subnet: String,
    pub address: String,
    /// Version of the network configuration in use.
    pub config_version: u64,
    /// Our certificate's end of validity (seconds since the epoch).
    pub cert_not_after: i64,
    /// We believe we have no route to the registry's node.
    pub registry_cut: bool,
    /// Addresses in the peer cache.
    pub cached_peers: usize,
    /// Nodes babel has a route to.
    pub known_nodes: usize,
    /// Our client tunnels.
    pub tunnels: Vec<TunnelStatus>,
    /// Peers connected to our OpenVPN servers.
    pub served: Vec<String>,
    /// Their traffic, per server (from its management socket).
    #[serde(default)]
    pub served_traffic: Vec<ServedTraffic>,
    /// The addresses we give peers (`ip,port,proto;...`), empty while
    /// none is known.
    pub reachable_at: String,
    /// How our IPv4 address is known: fixed, upnp, as seen by peers.
    pub ipv4: String,
    /// Port mappings on the home router (`external ip:port/proto -> port`).
    pub port_mappings: Vec<String>,
    /// Our IPv4 payload address and subnet length (`IP/N`), if any.
    pub ipv4_payload: Option<String>,
    /// Our country, if known, and the network's `same_country` list.
    pub country: Option<String>,
    pub same_country: Vec<String>,
    /// Times babeld exited and was started again since the node started.
    #[serde(default)]
    pub babeld_restarts: u64,
    /// OpenVPN processes (servers and client tunnels) that exited on
    /// their own since the node started.
    #[serde(default)]
    pub openvpn_restarts: u64,
    /// The host's memory, load and uptime: added by `re6st ctl` (it runs
    /// on the node's host), not by the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<system::SystemFigures>,
}

/// Tunnel states, as [`TunnelStatus::state`] spells them.
pub const TUNNEL_STATES: [&str; 4] = ["connecting", "established", "closing", "draining"];

/// A client of one of our OpenVPN servers and its byte counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedTraffic {
    /// The client's certificate name (its prefix, `N/LEN`).
    pub peer: String,
    pub iface: String,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStatus {
    pub peer: String,
    pub iface: String,
    pub state: String,
    pub address: Option<String>,
    pub protocol: Option<String>,
    /// Installed node routes through this tunnel.
    pub routes: usize,
    /// Bytes received and sent through the tunnel's interface, when
    /// known: `re6st ctl` reads them from the interface's kernel counters
    /// when the node did not give them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_bytes: Option<u64>,
}

/// The protocol field of an `ip,port,proto[,country]` address.
pub fn protocol_of(address: &str) -> Option<String> {
    address.split(',').nth(2).map(str::to_owned)
}

/// The status for a person; `now` in seconds since the epoch.
pub fn render(s: &NodeStatus, now: i64) -> String {
    let mut out = format!(
        "node {} (address {}) in {}\n",
        s.subnet, s.address, s.network
    );
    let left = s.cert_not_after.saturating_sub(now).div_euclid(86_400);
    out += &format!(
        "certificate valid until {} ({left} days left)\n",
        date(s.cert_not_after)
    );
    out += &format!("network configuration version {}\n", s.config_version);
    out += &format!(
        "registry: {}\n",
        if s.registry_cut {
            "no route to its node (bootstrapping from the cache)"
        } else {
            "reachable through the overlay"
        }
    );
    out += &format!(
        "peer cache: {} addresses; routes to {} nodes\n",
        s.cached_peers, s.known_nodes
    );
    out += &format!("client tunnels ({}):\n", s.tunnels.len());
    if !s.tunnels.is_empty() {
        out += &format!(
            "  {:<28} {:<12} {:<12} {:<9} {:>6} {:>12} {:>12}  ADDRESS\n",
            "PEER", "INTERFACE", "STATE", "PROTOCOL", "ROUTES", "RX BYTES", "TX BYTES"
        );
    }
    let bytes = |b: Option<u64>| b.map_or_else(|| "-".to_owned(), |b| b.to_string());
    for t in &s.tunnels {
        out += &format!(
            "  {:<28} {:<12} {:<12} {:<9} {:>6} {:>12} {:>12}  {}\n",
            t.peer,
            t.iface,
            t.state,
            t.protocol.as_deref().unwrap_or("-"),
            t.routes,
            bytes(t.rx_bytes),
            bytes(t.tx_bytes),
            t.address.as_deref().unwrap_or("-")
        );
    }
    out += &format!(
        "reachable at: {}\n",
        if s.reachable_at.is_empty() {
            "no address known yet (client tunnels only)"
        } else {
            &s.reachable_at
        }
    );
    out += &format!("IPv4 address: {}\n", s.ipv4);
    if let Some(p) = &s.ipv4_payload {
        out += &format!("IPv4 payload: {p}\n");
    }
    if let Some(c) = &s.country {
        out += &format!("country: {c}\n");
    }
    if !s.same_country.is_empty() {
        let home = s
            .country
            .as_ref()
            .is_some_and(|c| s.same_country.contains(c));
        out += &format!(
            "same_country {}: {}\n",
            s.same_country.join(","),
            if home {
                "tunnels stay in our country"
            } else {
                "no tunnel into these countries"
            }
        );
    }
    for m in &s.port_mappings {
        out += &format!("  port mapping {m}\n");
    }
    out += &format!("peers on our servers ({}):\n", s.served.len());
    for p in &s.served {
        out += &format!("  {p}\n");
    }
    if !s.served_traffic.is_empty() {
        out += &format!(
            "  {:<28} {:<14} {:>14} {:>14}\n",
            "CLIENT", "SERVER", "BYTES IN", "BYTES OUT"
        );
    }
    for t in &s.served_traffic {
        out += &format!(
            "  {:<28} {:<14} {:>14} {:>14}\n",
            t.peer, t.iface, t.bytes_received, t.bytes_sent
        );
    }
    out += &format!(
        "restarts: babeld {}, OpenVPN {}\n",
        s.babeld_restarts, s.openvpn_restarts
    );
    if let Some(sys) = &s.system {
        let mib = |b: u64| b / (1024 * 1024);
        out += &format!(
            "host: memory {} MiB available of {} MiB; load {} {} {}; up {}\n",
            mib(sys.memory_available_bytes),
            mib(sys.memory_total_bytes),
            system::load_text(sys.load_hundredths[0]),
            system::load_text(sys.load_hundredths[1]),
            system::load_text(sys.load_hundredths[2]),
            duration(sys.uptime_seconds)
        );
    }
    out
}

/// `3d 4h 05m` (days and hours only when there are).
fn duration(seconds: u64) -> String {
    let (d, h, m) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h}h {m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_for_people() {
        let s = NodeStatus {
            network: "2001:db8:42::/48".into(),
            subnet: "2001:db8:42:1::/64".into(),
            address: "2001:db8:42:1::1".into(),
            config_version: 3,
            cert_not_after: 1_827_100_800, // 2027-11-25
            registry_cut: false,
            cached_peers: 4,
            known_nodes: 6,
            tunnels: vec![TunnelStatus {
                peer: "2001:db8:42:2::/64".into(),
                iface: "re6stnet1".into(),
                state: "established".into(),
                address: Some("198.18.3.2,1194,udp".into()),
                protocol: protocol_of("198.18.3.2,1194,udp"),
                routes: 3,
                rx_bytes: Some(1234),
                tx_bytes: None,
            }],
            served: vec!["2001:db8:42:5::/64".into()],
            served_traffic: vec![ServedTraffic {
                peer: "5/16".into(),
                iface: "re6stnet-udp".into(),
                bytes_received: 1200,
                bytes_sent: 3400,
            }],
            reachable_at: "198.18.50.2,40000,udp".into(),
            ipv4: "upnp".into(),
            port_mappings: vec!["198.18.50.2:40000/udp -> 1194".into()],
            ipv4_payload: Some("198.19.130.129/25".into()),
            country: Some("FR".into()),
            same_country: vec!["FR".into()],
            babeld_restarts: 1,
            openvpn_restarts: 4,
            system: Some(system::SystemFigures {
                memory_total_bytes: 64 << 20,
                memory_available_bytes: 21 << 20,
                load_hundredths: [50, 25, 12],
                uptime_seconds: 2 * 86_400 + 3 * 3600 + 4 * 60 + 5,
            }),
        };
        let text = render(&s, 1_795_564_800); // 2026-11-25
        assert!(
            text.contains("valid until 2027-11-25 (365 days left)"),
            "{text}"
        );
        assert!(text.contains("re6stnet1    established  udp"), "{text}");
        assert!(text.contains("version 3"));
        assert!(
            text.contains("     3         1234            -  198.18.3.2"),
            "{text}"
        );
        assert!(text.contains("restarts: babeld 1, OpenVPN 4\n"), "{text}");
        assert!(
            text.contains(
                "host: memory 21 MiB available of 64 MiB; load 0.50 0.25 0.12; up 2d 3h 04m\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("reachable at: 198.18.50.2,40000,udp\n"),
            "{text}"
        );
        assert!(
            text.contains("port mapping 198.18.50.2:40000/udp -> 1194"),
            "{text}"
        );
        assert!(
            text.contains(
                "  5/16                         re6stnet-udp             1200           3400\n"
            ),
            "{text}"
        );
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<NodeStatus>(&json).unwrap(), s);
        // Any end of validity the JSON can carry renders (the days left
        // used to overflow for the extremes; seen while writing the
        // node_state fuzz target).
        for t in [i64::MIN, i64::MAX] {
            let extreme = NodeStatus {
                cert_not_after: t,
                ..s.clone()
            };
            assert!(render(&extreme, 1_795_564_800).contains("days left"));
        }
    }
}
