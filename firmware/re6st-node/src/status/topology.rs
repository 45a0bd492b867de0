//! `re6st ctl topology`: the network's map for its operator, from the
//! registry's private `topology` and `versions` RPCs (ours or upstream's),
//! as Graphviz DOT, SVG (through Graphviz's `dot`) or JSON.
//!
//! Upstream's answers, which ours follow:
//! - `topology`: a JSON object; each key is a node (`N/LEN`, its prefix as
//!   an integer and a length) that answered or was named by one that did,
//!   with the nodes its client tunnels go to; key `""` lists the nodes
//!   that answered. The registry explores from its own node, whose entry
//!   comes first (upstream's registry records its node's answer first).
//! - `versions`: a JSON object from each node's prefix as a bit string to
//!   what the node says it runs (`"0.642, Linux-..."`), or null.
//!
//! Parsing and rendering are pure; [`fetch`] does the three calls.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use re6st_proto::prefix::Prefix;
use re6st_registry_client::call::{self, CallError};
use re6st_registry_client::transport::RegistryUrl;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How long each call may take: the registry waits for every node's
/// answer (3 s after the last one), as upstream's client allows 60 s.
pub const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum TopologyError {
    #[error(
        "the registry refused {0} (403 Forbidden): it answers its private \
         RPCs only to its authorized origins (127.0.0.1, ::1 and each \
         --authorized-origin of re6st-registry); run this on the registry's \
         host or add this host's address"
    )]
    Forbidden(&'static str),
    #[error("{0}")]
    Call(CallError),
    #[error("the registry answered nothing to {0}")]
    Empty(&'static str),
    #[error("the registry's answer to {method} is not a re6st {method} answer: {why}")]
    Malformed { method: &'static str, why: String },
    #[error(
        "Graphviz's dot is needed for SVG and was not found ({0}): install \
         Graphviz (apt install graphviz), or write DOT or JSON (--format)"
    )]
    NoGraphviz(std::io::Error),
    #[error("Graphviz's dot failed: {0}")]
    Graphviz(String),
}

fn malformed(method: &'static str, why: impl fmt::Display) -> TopologyError {
    TopologyError::Malformed {
        method,
        why: why.to_string(),
    }
}

/// The `topology` answer, in its order: (node, nodes it is a client of).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Graph(pub Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for Graph {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Graph;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of node -> list of nodes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Graph, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Vec<String>>()? {
                    entries.push(entry);
                }
                Ok(Graph(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// A node on the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapNode {
    /// Its IPv6 subnet, as `re6st ctl status` shows it.
    pub subnet: String,
    /// Its prefix as upstream names it in `topology` (`N/LEN`).
    pub prefix: String,
    /// What it says it runs (`versions`), if it answered.
    pub version: Option<String>,
    /// It answered the registry's `topology` request: its tunnels are known.
    pub answered: bool,
    /// The registry's own node.
    pub registry: bool,
}

/// A tunnel: `client` connects to `server`'s OpenVPN server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MapTunnel {
    pub client: String,
    pub server: String,
}

/// The network as the registry sees it (the `--format json` output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkMap {
    pub network: String,
    pub nodes: Vec<MapNode>,
    pub tunnels: Vec<MapTunnel>,
}

fn subnet_of(network: &Prefix, node: &Prefix) -> String {
    network
        .concat(node)
        .map(|s| format!("{}/{}", s.to_ipv6(), s.len()))
        .unwrap_or_else(|_| node.to_subnet())
}

/// Parses and checks the `topology` answer.
pub fn parse_topology(body: &[u8]) -> Result<Graph, TopologyError> {
    let graph: Graph = serde_json::from_slice(body).map_err(|e| malformed("topology", e))?;
    for (node, peers) in &graph.0 {
        for p in std::iter::once(node).filter(|n| !n.is_empty()).chain(peers) {
            Prefix::from_subnet(p)
                .map_err(|e| malformed("topology", format!("node {p:?}: {e}")))?;
        }
    }
    Ok(graph)
}

/// Parses and checks the `versions` answer.
pub fn parse_versions(body: &[u8]) -> Result<BTreeMap<Prefix, Option<String>>, TopologyError> {
    let raw: BTreeMap<String, Option<String>> =
        serde_json::from_slice(body).map_err(|e| malformed("versions", e))?;
    raw.into_iter()
        .map(|(p, v)| {
            let prefix = p
                .parse::<Prefix>()
                .map_err(|e| malformed("versions", format!("node {p:?}: {e}")))?;
            Ok((prefix, v))
        })
        .collect()
}

/// The map of `network`: every node named by either answer, with its
/// version and its tunnels.
pub fn build(
    network: &Prefix,
    graph: &Graph,
    versions: &BTreeMap<Prefix, Option<String>>,
) -> NetworkMap {
    let parse = |s: &str| Prefix::from_subnet(s).ok();
    let answered: BTreeSet<Prefix> = graph
        .0
        .iter()
        .filter(|(k, _)| k.is_empty())
        .flat_map(|(_, v)| v.iter().filter_map(|s| parse(s)))
        .collect();
    // The exploration starts at the registry's node: the first entry,
    // if that node answered.
    let registry = graph
        .0
        .iter()
        .find(|(k, _)| !k.is_empty())
        .and_then(|(k, _)| parse(k))
        .filter(|p| answered.contains(p));
    let mut nodes: BTreeSet<Prefix> = answered.clone();
    let mut tunnels = BTreeSet::new();
    for (client, servers) in graph.0.iter().filter(|(k, _)| !k.is_empty()) {
        let Some(client) = parse(client) else {
            continue;
        };
        nodes.insert(client);
        for server in servers.iter().filter_map(|s| parse(s)) {
            nodes.insert(server);
            tunnels.insert(MapTunnel {
                client: subnet_of(network, &client),
                server: subnet_of(network, &server),
            });
        }
    }
    nodes.extend(versions.keys().copied());
    NetworkMap {
        network: subnet_of(network, &Prefix::default()),
        nodes: nodes
            .iter()
            .map(|p| MapNode {
                subnet: subnet_of(network, p),
                prefix: p.to_subnet(),
                version: versions.get(p).cloned().flatten(),
                answered: answered.contains(p),
                registry: Some(*p) == registry,
            })
            .collect(),
        tunnels: tunnels.into_iter().collect(),
    }
}

/// A DOT double-quoted string.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl NetworkMap {
    /// Graphviz DOT: one box per node labelled with its subnet and
    /// version, an arrow from client to server per tunnel; the registry's
    /// node drawn with a double border, nodes that did not answer dashed.
    pub fn to_dot(&self) -> String {
        let answered = self.nodes.iter().filter(|n| n.answered).count();
        let mut out = String::from("digraph re6st {\n");
        out += &format!(
            "  label={};\n  labelloc=t;\n  node [shape=box];\n",
            quoted(&format!(
                "re6st network {}: {} nodes ({answered} answered), {} tunnels (client -> server)",
                self.network,
                self.nodes.len(),
                self.tunnels.len()
            ))
        );
        for n in &self.nodes {
            let mut label = n.subnet.clone();
            if let Some(v) = &n.version {
                // Upstream's nodes say "VERSION, PLATFORM".
                for part in v.split(", ") {
                    label += "\n";
                    label += part;
                }
            }
            if n.registry {
                label += "\nregistry's node";
            }
            if !n.answered {
                label += "\n(did not answer)";
            }
            let mut attrs = format!("label={}", quoted(&label));
            if n.registry {
                attrs += ", peripheries=2";
            }
            if !n.answered {
                attrs += ", style=dashed";
            }
            out += &format!("  {} [{attrs}];\n", quoted(&n.subnet));
        }
        for t in &self.tunnels {
            out += &format!("  {} -> {};\n", quoted(&t.client), quoted(&t.server));
        }
        out += "}\n";
        out
    }

    pub fn to_json(&self) -> String {
        // Serializing plain strings, numbers and booleans cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// One line for the operator: what the map holds.
    pub fn summary(&self) -> String {
        let answered = self.nodes.iter().filter(|n| n.answered).count();
        let registry = self
            .nodes
            .iter()
            .find(|n| n.registry)
            .map_or("not among them".to_owned(), |n| n.subnet.clone());
        format!(
            "{} nodes ({answered} answered), {} tunnels; the registry's node: {registry}",
            self.nodes.len(),
            self.tunnels.len()
        )
    }
}

/// SVG from DOT, by Graphviz's `dot`.
pub fn svg(dot: &str) -> Result<Vec<u8>, TopologyError> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(TopologyError::NoGraphviz)?;
    // dot reads all its input before writing: no deadlock on the pipes.
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(dot.as_bytes())
            .map_err(|e| TopologyError::Graphviz(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| TopologyError::Graphviz(e.to_string()))?;
    if !out.status.success() {
        return Err(TopologyError::Graphviz(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

async fn private_call(url: &RegistryUrl, method: &'static str) -> Result<Vec<u8>, TopologyError> {
    match call::unauthenticated(url, method, &[], TIMEOUT).await {
        Ok(Some(body)) => Ok(body.to_vec()),
        Ok(None) => Err(TopologyError::Empty(method)),
        Err(CallError::Forbidden(_)) => Err(TopologyError::Forbidden(method)),
        Err(e) => Err(TopologyError::Call(e)),
    }
}

/// Asks the registry at `url` for its CA (the network prefix), topology
/// and versions, and makes the map.
pub async fn fetch(url: &RegistryUrl) -> Result<NetworkMap, TopologyError> {
    let (ca, topology, versions) = tokio::join!(
        private_call(url, "getCa"),
        private_call(url, "topology"),
        private_call(url, "versions"),
    );
    let ca = openssl::x509::X509::from_pem(&ca?).map_err(|e| malformed("getCa", e))?;
    let network = re6st_proto::cert::network_from_ca(&ca).map_err(|e| malformed("getCa", e))?;
    let graph = parse_topology(&topology?)?;
    let versions = parse_versions(&versions?)?;
    Ok(build(&network, &graph, &versions))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> Prefix {
        Prefix::from_ipv6("2001:db8:42::".parse().unwrap(), 48).unwrap()
    }

    /// An upstream-style network: the registry's node 1/16 first, served
    /// by nothing, client of 2/16; 3/16 named but silent.
    const TOPOLOGY: &[u8] =
        br#"{"1/16": ["2/16"], "3/16": ["1/16"], "": ["1/16", "2/16"], "2/16": ["3/16"]}"#;
    const VERSIONS: &[u8] = br#"{"0000000000000001": "0.642, Linux-6.1-x86_64",
        "0000000000000010": "re6st-rs 0.1.0", "0000000000000100": null}"#;

    #[test]
    fn every_node_with_its_version_and_every_tunnel() {
        let graph = parse_topology(TOPOLOGY).unwrap();
        assert_eq!(graph.0[0].0, "1/16", "order kept");
        let map = build(&network(), &graph, &parse_versions(VERSIONS).unwrap());
        assert_eq!(map.network, "2001:db8:42::/48");
        let nodes: Vec<_> = map
            .nodes
            .iter()
            .map(|n| {
                (
                    n.subnet.as_str(),
                    n.prefix.as_str(),
                    n.version.as_deref(),
                    n.answered,
                    n.registry,
                )
            })
            .collect();
        assert_eq!(
            nodes,
            [
                (
                    "2001:db8:42:1::/64",
                    "1/16",
                    Some("0.642, Linux-6.1-x86_64"),
                    true,
                    true
                ),
                (
                    "2001:db8:42:2::/64",
                    "2/16",
                    Some("re6st-rs 0.1.0"),
                    true,
                    false
                ),
                ("2001:db8:42:3::/64", "3/16", None, false, false),
                ("2001:db8:42:4::/64", "4/16", None, false, false),
            ]
        );
        let t = |c: u8, s: u8| MapTunnel {
            client: format!("2001:db8:42:{c}::/64"),
            server: format!("2001:db8:42:{s}::/64"),
        };
        assert_eq!(map.tunnels, [t(1, 2), t(2, 3), t(3, 1)]);
        assert_eq!(
            map.summary(),
            "4 nodes (2 answered), 3 tunnels; the registry's node: 2001:db8:42:1::/64"
        );
        let back: NetworkMap = serde_json::from_str(&map.to_json()).unwrap();
        assert_eq!(back, map);
    }

    #[test]
    fn dot_marks_the_registry_and_silent_nodes_and_escapes_versions() {
        let graph = parse_topology(TOPOLOGY).unwrap();
        let versions =
            parse_versions(br#"{"0000000000000010": "evil\" ]; x -> y [\\\n"}"#).unwrap();
        let dot = build(&network(), &graph, &versions).to_dot();
        assert!(dot.starts_with("digraph re6st {\n"), "{dot}");
        assert!(
            dot.contains(
                "  \"2001:db8:42:1::/64\" [label=\"2001:db8:42:1::/64\\nregistry's node\", peripheries=2];\n"
            ),
            "{dot}"
        );
        assert!(
            dot.contains(
                "  \"2001:db8:42:2::/64\" [label=\"2001:db8:42:2::/64\\nevil\\\" ]; x -> y [\\\\\\n\"];\n"
            ),
            "{dot}"
        );
        assert!(
            dot.contains("  \"2001:db8:42:3::/64\" [label=\"2001:db8:42:3::/64\\n(did not answer)\", style=dashed];\n"),
            "{dot}"
        );
        assert!(dot.contains("  \"2001:db8:42:2::/64\" -> \"2001:db8:42:3::/64\";\n"));
        assert_eq!(dot.matches(" -> \"").count(), 3, "{dot}");
    }

    #[test]
    fn no_registry_mark_when_its_node_did_not_answer() {
        // The first entry is a node that did not answer (named by 3/16).
        let graph = parse_topology(br#"{"2/16": [], "": ["3/16"], "3/16": ["2/16"]}"#).unwrap();
        let map = build(&network(), &graph, &BTreeMap::new());
        assert!(map.nodes.iter().all(|n| !n.registry), "{map:?}");
        let empty = build(
            &network(),
            &parse_topology(b"{}").unwrap(),
            &BTreeMap::new(),
        );
        assert!(empty.nodes.is_empty() && empty.tunnels.is_empty());
    }

    #[test]
    fn malformed_answers_are_clear_errors() {
        for (body, want) in [
            (
                &b"<html>"[..],
                "topology is not a re6st topology answer: expected value",
            ),
            (b"[]", "an object of node -> list of nodes"),
            (br#"{"1/16": "2/16"}"#, "invalid type: string"),
            (br#"{"1/16": ["x"]}"#, "node \"x\""),
            (br#"{"1/999": []}"#, "node \"1/999\""),
            (br#"{"": [3]}"#, "invalid type: integer"),
        ] {
            let e = parse_topology(body).unwrap_err().to_string();
            assert!(e.contains(want), "{}: {e}", String::from_utf8_lossy(body));
        }
        for (body, want) in [
            (&b"{"[..], "versions is not a re6st versions answer"),
            (br#"{"01x": "v"}"#, "node \"01x\""),
            (br#"{"01": 3}"#, "invalid type: integer"),
        ] {
            let e = parse_versions(body).unwrap_err().to_string();
            assert!(e.contains(want), "{}: {e}", String::from_utf8_lossy(body));
        }
    }
}
