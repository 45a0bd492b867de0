//! `re6st ctl topology`: the network's map, drawn from a registry (ours or
//! upstream's) serving a real network in namespaces, checked against what
//! each node's `re6st ctl status` shows; and its errors on bad input.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use re6st_testkit::overlay::{Overlay, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

type Edges = BTreeSet<(String, String)>;

/// Every node's subnet and every tunnel (client, server) as the nodes
/// show them in `re6st ctl status`.
fn shown(o: &Overlay) -> (BTreeSet<String>, Edges) {
    let (mut nodes, mut edges) = (BTreeSet::new(), BTreeSet::new());
    for n in 0..o.nodes {
        let s = o
            .try_status(n)
            .unwrap_or_else(|e| panic!("node{n} has no status: {e}"));
        let me = s["subnet"].as_str().unwrap().to_owned();
        for t in s["tunnels"].as_array().unwrap() {
            edges.insert((me.clone(), t["peer"].as_str().unwrap().to_owned()));
        }
        for p in s["served"].as_array().unwrap() {
            edges.insert((p.as_str().unwrap().to_owned(), me.clone()));
        }
        nodes.insert(me);
    }
    (nodes, edges)
}

/// `re6st ctl topology ARGS` in namespace `ns`.
fn topology(o: &Overlay, ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &o.lab.ns(ns), BIN, "ctl", "topology"])
        .args(["--registry", "http://198.18.1.2:9080/"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The nodes and edges of a DOT file as the command writes it.
fn parse_dot(dot: &str) -> (BTreeSet<String>, Edges) {
    let (mut nodes, mut edges) = (BTreeSet::new(), BTreeSet::new());
    assert!(dot.starts_with("digraph re6st {"), "{dot}");
    for line in dot.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix('"') else {
            continue;
        };
        let (first, rest) = rest.split_once('"').unwrap();
        if let Some(to) = rest.strip_prefix(" -> \"") {
            let to = to.strip_suffix("\";").unwrap_or_else(|| panic!("{line}"));
            edges.insert((first.to_owned(), to.to_owned()));
        } else {
            assert!(rest.starts_with(" [label=\""), "{line}");
            assert!(nodes.insert(first.to_owned()), "{first} twice: {dot}");
        }
    }
    (nodes, edges)
}

/// The nodes (titles) and edges of Graphviz's SVG.
fn parse_svg(svg: &str) -> (BTreeSet<String>, Edges) {
    let (mut nodes, mut edges) = (BTreeSet::new(), BTreeSet::new());
    for group in svg.split("<g id=\"").skip(1) {
        let class = group.split('"').nth(2).unwrap_or_default();
        let Some(title) = group
            .split_once("<title>")
            .and_then(|(_, t)| t.split_once("</title>"))
            .map(|(t, _)| t.replace("&#45;", "-").replace("&gt;", ">"))
        else {
            continue;
        };
        match class {
            "node" => assert!(nodes.insert(title.clone()), "{title} twice"),
            "edge" => {
                let (a, b) = title.split_once("->").unwrap_or_else(|| panic!("{title}"));
                edges.insert((a.to_owned(), b.to_owned()));
            }
            _ => {}
        }
    }
    (nodes, edges)
}

/// Draws the network from namespace `reg` in every format until the
/// nodes' tunnels did not change during one reading, and checks that the
/// map has every node (with its version, the registry's node marked) and
/// exactly the tunnels the nodes show. `version` is what each node says
/// it runs.
fn check_map(o: &Overlay, version: &str) {
    let out_dir = o.dir.join("map");
    std::fs::create_dir_all(&out_dir).unwrap();
    let file = |f: &str| out_dir.join(f).display().to_string();
    let svg = Path::new("/usr/bin/dot").exists();
    let mut args = vec![
        "-o".to_owned(),
        file("map.json"),
        "-o".into(),
        file("map.dot"),
    ];
    if svg {
        args.extend(["-o".into(), file("map.svg")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for _ in 0..5 {
        let before = shown(o);
        let out = topology(o, "reg", &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", out.status);
        if shown(o) != before {
            continue; // a tunnel changed meanwhile: read again
        }
        let (nodes, edges) = before;
        assert!(!edges.is_empty());
        let summary = format!(
            "{} nodes ({} answered), {} tunnels",
            nodes.len(),
            nodes.len(),
            edges.len()
        );
        assert!(stderr.contains(&summary), "{stderr}");

        let map: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file("map.json")).unwrap()).unwrap();
        assert_eq!(map["network"], "2001:db8:42::/48", "{map}");
        let registry_node = o.try_status(0).unwrap()["subnet"].clone();
        let mut json_nodes = BTreeSet::new();
        for n in map["nodes"].as_array().unwrap() {
            let subnet = n["subnet"].as_str().unwrap().to_owned();
            assert_eq!(n["version"].as_str(), Some(version), "{n}");
            assert_eq!(n["answered"], true, "{n}");
            assert_eq!(n["registry"], n["subnet"] == registry_node, "{n}");
            json_nodes.insert(subnet);
        }
        assert_eq!(json_nodes, nodes, "{map}");
        let json_edges: Edges = map["tunnels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap().to_owned();
                (s("client"), s("server"))
            })
            .collect();
        assert_eq!(json_edges, edges, "{map}");

        let dot = std::fs::read_to_string(file("map.dot")).unwrap();
        assert_eq!(parse_dot(&dot), (nodes.clone(), edges.clone()), "{dot}");
        let registry_line = format!("  {registry_node} [label=");
        let marked: Vec<&str> = dot
            .lines()
            .filter(|l| l.contains("peripheries=2"))
            .collect();
        assert!(
            marked.len() == 1 && marked[0].starts_with(&registry_line),
            "{dot}"
        );
        assert!(dot.contains(&format!("\\n{version}")), "{dot}");

        if svg {
            let drawing = std::fs::read_to_string(file("map.svg")).unwrap();
            assert_eq!(parse_svg(&drawing), (nodes, edges), "{drawing}");
        }
        return;
    }
    panic!("the tunnels changed at each of 5 readings");
}

#[test]
fn ctl_topology_draws_every_node_and_tunnel_of_our_registrys_network() {
    // The registry answers private RPCs from its own address, where the
    // command runs (namespace reg); n1 is not an authorized origin.
    let o = Overlay::start(
        BIN.as_ref(),
        Registry::Ours,
        5,
        None,
        &["--authorized-origin", "198.18.1.2"],
    );
    o.all_pairs_reach(Duration::from_secs(120));
    check_map(&o, &format!("re6st-rs {}", env!("CARGO_PKG_VERSION")));

    // To standard output, DOT by default.
    let out = topology(&o, "reg", &[]);
    assert!(out.status.success());
    let (nodes, _) = parse_dot(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(nodes.len(), 5);

    // Not an authorized origin: the registry's 403, explained.
    let out = topology(&o, "n1", &["--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("403 Forbidden") && stderr.contains("authorized origins"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    o.finish();
}

#[test]
fn ctl_topology_draws_the_network_of_upstreams_registry() {
    // Upstream's registry (re6stnet 0.642) relays its topology and
    // versions requests through our node0, as it would through its own.
    let o = Overlay::start(
        BIN.as_ref(),
        Registry::Upstream,
        4,
        None,
        &["--authorized-origin", "198.18.1.2"],
    );
    o.all_pairs_reach(Duration::from_secs(120));
    check_map(&o, &format!("re6st-rs {}", env!("CARGO_PKG_VERSION")));
    o.finish();
}

/// A registry that answers `getCa` with a real CA and `topology` with
/// `body` (status `status`), on 127.0.0.1; returns its URL.
struct FakeRegistry {
    child: std::process::Child,
    dir: std::path::PathBuf,
    url: String,
}

impl FakeRegistry {
    fn start(status: u16, body: &str) -> FakeRegistry {
        let dir = std::env::temp_dir().join(format!(
            "re6st-topology-{}-{status}-{}",
            std::process::id(),
            body.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(BIN)
            .args(["registry", "--init-network", "2001:db8:42::/48", "--dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = r#"
import http.server, sys
ca = open(sys.argv[1], 'rb').read()
status, body = int(sys.argv[2]), sys.argv[3].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code, data = (200, ca) if self.path == '/getCa' else \
            (200, b'{}') if self.path == '/versions' else (status, body)
        self.send_response(code)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a): pass
s = http.server.HTTPServer(('127.0.0.1', 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(dir.join("ca.crt"))
            .args([&status.to_string(), body])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut port,
        )
        .unwrap();
        let url = format!("http://127.0.0.1:{}/", port.trim());
        FakeRegistry { child, dir, url }
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ctl_topology(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(["ctl", "topology", "--registry", url])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ctl_topology_explains_bad_registries_and_arguments() {
    let expect = |(code, stdout, stderr): (Option<i32>, String, String), want: &str| {
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains(want), "want {want:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    // Nothing listens on port 1.
    expect(
        ctl_topology("http://127.0.0.1:1/", &[]),
        "cannot connect to 127.0.0.1:1",
    );
    expect(
        ctl_topology("ftp://x/", &[]),
        "scheme must be http or https",
    );
    expect(
        ctl_topology("http://127.0.0.1:1/", &["-o", "/tmp/map.png"]),
        "cannot tell the format from the name",
    );
    // A registry whose topology answer is not one.
    let fake = FakeRegistry::start(200, r#"{"1/16": "2/16"}"#);
    expect(
        ctl_topology(&fake.url, &[]),
        "the registry's answer to topology is not a re6st topology answer: invalid type: string",
    );
    let fake = FakeRegistry::start(200, "<html>not json</html>");
    expect(
        ctl_topology(&fake.url, &["--format", "json"]),
        "the registry's answer to topology is not a re6st topology answer",
    );
    let fake = FakeRegistry::start(500, "");
    expect(
        ctl_topology(&fake.url, &[]),
        "registry answered 500 Internal Server Error to topology",
    );
    // A good answer (an empty network) is drawn.
    let fake = FakeRegistry::start(200, "{}");
    let (code, stdout, stderr) = ctl_topology(&fake.url, &["--format", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let map: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(map["nodes"], serde_json::json!([]), "{map}");
}
