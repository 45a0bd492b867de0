//! `re6st ctl metrics`: the node's status in Prometheus' text exposition
//! format (version 0.0.4). A pure function of the status, so that any
//! page that has the status (e.g. a `/metrics` page on the router) can
//! serve the same text.

use std::fmt::Write;

use super::{NodeStatus, TUNNEL_STATES};

/// Appends Prometheus text: `# HELP`/`# TYPE` once per family, then its
/// samples.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        // One body for every value type (firmware size).
        self.sample_dyn(name, labels, &value);
    }

    fn sample_dyn(&mut self, name: &str, labels: &[(&str, &str)], value: &dyn std::fmt::Display) {
        self.0 += name;
        if !labels.is_empty() {
            self.0 += "{";
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0 += ",";
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0 += "}";
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }
}

/// A label value as the text format wants it: backslash, double quote
/// and line feed escaped.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out += "\\\\",
            '"' => out += "\\\"",
            '\n' => out += "\\n",
            c => out.push(c),
        }
    }
    out
}

/// The text `re6st ctl metrics` prints; `now` in seconds since the epoch.
pub fn render(s: &NodeStatus, now: i64) -> String {
    let mut e = Exposition(String::new());
    e.family(
        "re6st_node_info",
        "gauge",
        "The node's network, subnet and address (value always 1).",
    );
    e.sample(
        "re6st_node_info",
        &[
            ("network", &s.network),
            ("subnet", &s.subnet),
            ("address", &s.address),
        ],
        1,
    );
    e.family(
        "re6st_node_tunnels",
        "gauge",
        "Client tunnels (ours to peers) by state.",
    );
    for state in TUNNEL_STATES {
        let n = s.tunnels.iter().filter(|t| t.state == state).count();
        e.sample("re6st_node_tunnels", &[("state", state)], n);
    }
    e.gauge(
        "re6st_node_served_peers",
        "Peers connected to our OpenVPN servers.",
        s.served.len(),
    );
    e.family(
        "re6st_node_tunnel_routes",
        "gauge",
        "Node routes babel installed through each client tunnel.",
    );
    for t in &s.tunnels {
        e.sample(
            "re6st_node_tunnel_routes",
            &[("peer", &t.peer), ("iface", &t.iface)],
            t.routes,
        );
    }
    for (name, help, pick) in [
        (
            "re6st_node_tunnel_receive_bytes_total",
            "Bytes received through each client tunnel (its interface's counter).",
            (|t| t.rx_bytes) as fn(&super::TunnelStatus) -> Option<u64>,
        ),
        (
            "re6st_node_tunnel_transmit_bytes_total",
            "Bytes sent through each client tunnel (its interface's counter).",
            |t| t.tx_bytes,
        ),
    ] {
        e.family(name, "counter", help);
        for t in &s.tunnels {
            if let Some(bytes) = pick(t) {
                e.sample(name, &[("peer", &t.peer), ("iface", &t.iface)], bytes);
            }
        }
    }
    for (name, help, pick) in [
        (
            "re6st_node_served_receive_bytes_total",
            "Bytes received from each client of our OpenVPN servers (its management interface).",
            (|t| t.bytes_received) as fn(&super::ServedTraffic) -> u64,
        ),
        (
            "re6st_node_served_transmit_bytes_total",
            "Bytes sent to each client of our OpenVPN servers (its management interface).",
            |t| t.bytes_sent,
        ),
    ] {
        if s.served_traffic.is_empty() {
            continue;
        }
        e.family(name, "counter", help);
        for t in &s.served_traffic {
            e.sample(name, &[("peer", &t.peer), ("iface", &t.iface)], pick(t));
        }
    }
    e.gauge(
        "re6st_node_babel_routed_nodes",
        "Nodes babel has a route to.",
        s.known_nodes,
    );
    e.gauge(
        "re6st_node_peer_cache_size",
        "Addresses in the peer cache.",
        s.cached_peers,
    );
    e.gauge(
        "re6st_node_registry_reachable",
        "1 when the registry's node is routed through the overlay, 0 when the node is cut from it.",
        u8::from(!s.registry_cut),
    );
    e.gauge(
        "re6st_node_certificate_expiry_seconds",
        "Seconds until the node's certificate ends (negative once it has).",
        s.cert_not_after.saturating_sub(now),
    );
    e.gauge(
        "re6st_node_config_version",
        "Version of the network configuration in use.",
        s.config_version,
    );
    e.counter(
        "re6st_node_babeld_restarts_total",
        "Times babeld exited and was started again.",
        s.babeld_restarts,
    );
    e.counter(
        "re6st_node_openvpn_restarts_total",
        "OpenVPN processes (servers, client tunnels) that exited on their own.",
        s.openvpn_restarts,
    );
    if let Some(sys) = &s.system {
        e.gauge(
            "re6st_system_memory_total_bytes",
            "The host's memory.",
            sys.memory_total_bytes,
        );
        e.gauge(
            "re6st_system_memory_available_bytes",
            "Memory available to new programs (MemAvailable).",
            sys.memory_available_bytes,
        );
        for (name, minutes, load) in [
            ("re6st_system_load1", 1, sys.load_hundredths[0]),
            ("re6st_system_load5", 5, sys.load_hundredths[1]),
            ("re6st_system_load15", 15, sys.load_hundredths[2]),
        ] {
            e.gauge(
                name,
                &format!("Load average over {minutes} minutes."),
                super::system::load_text(load),
            );
        }
        e.gauge(
            "re6st_system_uptime_seconds",
            "Seconds since the host booted.",
            sys.uptime_seconds,
        );
    }
    e.0
}

/// One sample of the text format: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {why}")]
pub struct ParseError {
    pub line: usize,
    pub why: String,
}

/// Reads text in Prometheus' exposition format (the subset we write:
/// no timestamps): the samples, checking that every sample's family was
/// declared by `# TYPE` before it, that names and labels are well formed
/// and values are numbers. For tests and for people checking a scrape.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut types: std::collections::BTreeMap<String, String> = Default::default();
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |why: &str| ParseError {
            line: i + 1,
            why: format!("{why}: {line:?}"),
        };
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !valid_name(name) {
                        return Err(err("bad metric name"));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(err("unknown type"));
                    }
                    if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                        return Err(err("family declared twice"));
                    }
                }
                (Some("HELP"), Some(name), _) if valid_name(name) => {}
                (Some("HELP"), ..) => return Err(err("bad HELP line")),
                _ => {}
            }
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(at) => line.split_at(at),
            None => return Err(err("no value")),
        };
        if !valid_name(name) {
            return Err(err("bad metric name"));
        }
        let mut labels = Vec::new();
        let mut rest = rest;
        if let Some(mut r) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = r.strip_prefix('}') {
                    r = after;
                    break;
                }
                let eq = r.find("=\"").ok_or_else(|| err("bad label"))?;
                let key = &r[..eq];
                if !valid_name(key) || key.contains(':') {
                    return Err(err("bad label name"));
                }
                let mut value = String::new();
                let mut chars = r[eq + 2..].char_indices();
                let end = loop {
                    match chars.next() {
                        Some((at, '"')) => break eq + 2 + at + 1,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => return Err(err("bad escape in a label value")),
                        },
                        Some((_, c)) => value.push(c),
                        None => return Err(err("unterminated label value")),
                    }
                };
                labels.push((key.to_owned(), value));
                r = &r[end..];
                r = r.strip_prefix(',').unwrap_or(r);
            }
            rest = r;
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before the value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| err("value is not a number"))?,
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        if !types.contains_key(family) {
            return Err(err("sample before its # TYPE"));
        }
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(samples)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The value of the sample `name` whose labels include `labels`.
pub fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::super::system::SystemFigures;
    use super::super::TunnelStatus;
    use super::*;

    fn status() -> NodeStatus {
        let tunnel =
            |peer: &str, iface: &str, state: &str, bytes: Option<(u64, u64)>| TunnelStatus {
                peer: peer.into(),
                iface: iface.into(),
                state: state.into(),
                address: Some("198.18.3.2,1194,udp".into()),
                protocol: Some("udp".into()),
                routes: 2,
                rx_bytes: bytes.map(|b| b.0),
                tx_bytes: bytes.map(|b| b.1),
            };
        NodeStatus {
            network: "2001:db8:42::/48".into(),
            subnet: "2001:db8:42:1::/64".into(),
            address: "2001:db8:42:1::1".into(),
            config_version: 7,
            cert_not_after: 1_000_000,
            registry_cut: true,
            cached_peers: 4,
            known_nodes: 6,
            tunnels: vec![
                tunnel(
                    "2001:db8:42:2::/64",
                    "re6stnet1",
                    "established",
                    Some((10, 20)),
                ),
                tunnel("2001:db8:42:3::/64", "re6stnet2", "established", None),
                tunnel(
                    "2001:db8:42:4::/64",
                    "re6stnet3",
                    "connecting",
                    Some((0, 5)),
                ),
            ],
            served: vec!["2001:db8:42:5::/64".into()],
            served_traffic: vec![super::super::ServedTraffic {
                peer: "2001:db8:42:5::/64".into(),
                iface: "re6stnet-udp".into(),
                bytes_received: 300,
                bytes_sent: 400,
            }],
            reachable_at: String::new(),
            ipv4: "fixed".into(),
            port_mappings: vec![],
            ipv4_payload: None,
            country: None,
            same_country: vec![],
            babeld_restarts: 2,
            openvpn_restarts: 5,
            system: Some(SystemFigures {
                memory_total_bytes: 64 << 20,
                memory_available_bytes: 20 << 20,
                load_hundredths: [50, 25, 100],
                uptime_seconds: 3600,
            }),
        }
    }

    #[test]
    fn every_figure_of_the_status_is_exported() {
        let text = render(&status(), 999_000);
        let m = parse(&text).unwrap();
        let v = |name: &str, labels: &[(&str, &str)]| {
            value_of(&m, name, labels).unwrap_or_else(|| panic!("{name} {labels:?}\n{text}"))
        };
        assert_eq!(
            v("re6st_node_info", &[("subnet", "2001:db8:42:1::/64")]),
            1.0
        );
        assert_eq!(v("re6st_node_tunnels", &[("state", "established")]), 2.0);
        assert_eq!(v("re6st_node_tunnels", &[("state", "connecting")]), 1.0);
        assert_eq!(v("re6st_node_tunnels", &[("state", "draining")]), 0.0);
        assert_eq!(v("re6st_node_tunnels", &[("state", "closing")]), 0.0);
        assert_eq!(v("re6st_node_served_peers", &[]), 1.0);
        assert_eq!(
            v("re6st_node_tunnel_routes", &[("iface", "re6stnet2")]),
            2.0
        );
        let rx = "re6st_node_tunnel_receive_bytes_total";
        let tx = "re6st_node_tunnel_transmit_bytes_total";
        assert_eq!(v(rx, &[("peer", "2001:db8:42:2::/64")]), 10.0);
        assert_eq!(v(tx, &[("iface", "re6stnet1")]), 20.0);
        assert_eq!(v(tx, &[("iface", "re6stnet3")]), 5.0);
        // Unknown counts are left out, not exported as 0.
        assert_eq!(value_of(&m, rx, &[("iface", "re6stnet2")]), None);
        let served = [("peer", "2001:db8:42:5::/64"), ("iface", "re6stnet-udp")];
        assert_eq!(v("re6st_node_served_receive_bytes_total", &served), 300.0);
        assert_eq!(v("re6st_node_served_transmit_bytes_total", &served), 400.0);
        assert_eq!(v("re6st_node_babel_routed_nodes", &[]), 6.0);
        assert_eq!(v("re6st_node_peer_cache_size", &[]), 4.0);
        assert_eq!(v("re6st_node_registry_reachable", &[]), 0.0);
        assert_eq!(v("re6st_node_certificate_expiry_seconds", &[]), 1000.0);
        assert_eq!(v("re6st_node_config_version", &[]), 7.0);
        assert_eq!(v("re6st_node_babeld_restarts_total", &[]), 2.0);
        assert_eq!(v("re6st_node_openvpn_restarts_total", &[]), 5.0);
        assert_eq!(v("re6st_system_memory_total_bytes", &[]), (64 << 20) as f64);
        assert_eq!(
            v("re6st_system_memory_available_bytes", &[]),
            (20 << 20) as f64
        );
        assert_eq!(v("re6st_system_load1", &[]), 0.5);
        assert_eq!(v("re6st_system_load5", &[]), 0.25);
        assert_eq!(v("re6st_system_load15", &[]), 1.0);
        assert_eq!(v("re6st_system_uptime_seconds", &[]), 3600.0);

        let reachable = NodeStatus {
            registry_cut: false,
            system: None,
            served_traffic: vec![],
            ..status()
        };
        let m = parse(&render(&reachable, 2_000_000)).unwrap();
        assert_eq!(
            value_of(&m, "re6st_node_registry_reachable", &[]),
            Some(1.0)
        );
        assert_eq!(
            value_of(&m, "re6st_node_certificate_expiry_seconds", &[]),
            Some(-1_000_000.0)
        );
        assert!(m.iter().all(|s| !s.name.starts_with("re6st_system_")));
        // No client, no served family (a family without samples is noise).
        assert!(m.iter().all(|s| !s.name.starts_with("re6st_node_served_r")));
    }

    #[test]
    fn label_values_are_escaped() {
        let odd = NodeStatus {
            network: "a\"b\\c\nd".into(),
            ..status()
        };
        let text = render(&odd, 0);
        assert!(text.contains(r#"network="a\"b\\c\nd""#), "{text}");
        let m = parse(&text).unwrap();
        assert_eq!(
            value_of(&m, "re6st_node_info", &[("network", "a\"b\\c\nd")]),
            Some(1.0)
        );
    }

    #[test]
    fn the_parser_refuses_what_prometheus_would() {
        for bad in [
            "x 1\n",                                 // no # TYPE
            "# TYPE x gauge\nx{a=\"1} 1\n",          // unterminated
            "# TYPE x gauge\nx{a=\"\\q\"} 1\n",      // bad escape
            "# TYPE x gauge\nx one\n",               // not a number
            "# TYPE x gauge\n# TYPE x gauge\nx 1\n", // declared twice
            "# TYPE 1x gauge\n",                     // bad name
            "# TYPE x gauge\nx{1a=\"v\"} 1\n",       // bad label name
            "# TYPE x gauge\nx\n",                   // no value
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let h = "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n";
        assert_eq!(parse(h).unwrap().len(), 3);
    }
}
