//! A sweep's reports (JSON files of single runs) as one Markdown table and
//! one JSON array.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

fn f(v: &Value, path: &[&str], digits: usize) -> String {
    num(v, path).map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
}

fn pct(v: &Value, path: &[&str]) -> String {
    num(v, path).map_or_else(|| "-".to_owned(), |x| format!("{:.1} %", 100.0 * x))
}

fn static_loss(v: &Value, kind: &str, fraction: f64) -> String {
    v.pointer("/steady/static_loss")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter().find(|l| {
                l["kind"] == kind
                    && l["fraction"]
                        .as_f64()
                        .is_some_and(|x| (x - fraction).abs() < 1e-9)
            })
        })
        .map_or_else(|| "-".to_owned(), |l| pct(l, &["largest_fraction"]))
}

/// One row per report.
pub fn markdown(reports: &[Value]) -> String {
    let mut o = String::new();
    o.push_str(
        "| nodes | seed | loss | registry | simulated | wall | tunnels/node mean (max) | diameter | mean hops | random-regular mean hops | hop stretch | latency stretch median (p90) | static loss 30 % random / targeted: largest | after the loss: components, largest | one component again after | peer msgs /node/min | version msgs /node/min | babel dumps /node/min |\n",
    );
    o.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in reports {
        let loss = r.pointer("/loss");
        let reconnected = match loss {
            Some(Value::Null) | None => "-".to_owned(),
            Some(l) => match l["reconnected_after_s"].as_i64() {
                Some(s) => format!("{s} s"),
                None => "never".to_owned(),
            },
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} s | {} s | {} ({}) | {} | {} | {} | {} | {} ({}) | {} / {} | {}, {} | {} | {} | {} | {} |",
            f(r, &["params", "nodes"], 0),
            f(r, &["params", "seed"], 0),
            r.pointer("/params/loss").filter(|v| !v.is_null()).map_or("none".to_owned(), |l| {
                format!("{} {:.0} %", l["kind"].as_str().unwrap_or("?"), 100.0 * l["fraction"].as_f64().unwrap_or(0.0))
            }),
            match (
                r.pointer("/params/registry_down") == Some(&Value::Bool(true)),
                r.pointer("/params/nat_announces") == Some(&Value::Bool(true)),
            ) {
                (true, false) => "down",
                (true, true) => "down; NATed nodes announce",
                (false, false) => "up",
                (false, true) => "up; NATed nodes announce",
            },
            f(r, &["params", "duration"], 0),
            f(r, &["wall_seconds"], 0),
            f(r, &["steady", "tunnels_per_node", "mean"], 2),
            f(r, &["steady", "tunnels_per_node", "max"], 0),
            f(r, &["steady", "paths", "overlay", "diameter"], 0),
            f(r, &["steady", "paths", "overlay", "mean"], 3),
            f(r, &["steady", "paths", "reference", "mean"], 3),
            f(r, &["steady", "paths", "hop_stretch"], 3),
            f(r, &["steady", "paths", "latency_stretch", "median"], 2),
            f(r, &["steady", "paths", "latency_stretch", "p90"], 2),
            static_loss(r, "random", 0.3),
            static_loss(r, "targeted", 0.3),
            f(r, &["loss", "components_after"], 0),
            pct(r, &["loss", "largest_fraction_after"]),
            reconnected,
            f(r, &["control_steady", "peer_messages"], 2),
            f(r, &["control_steady", "version_announcements"], 1),
            f(r, &["control_steady", "babel_dumps"], 1),
        );
    }
    o
}

pub fn write(md: &Path, json: &Path, files: &[PathBuf]) -> Result<(), String> {
    let mut reports = Vec::new();
    for p in files {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        reports.push(v);
    }
    let table = markdown(&reports);
    let mut text = std::fs::read_to_string(md).unwrap_or_default();
    // The sweep script writes the page's prose; the table goes at its marker.
    const MARK: &str = "<!-- table -->";
    if text.contains(MARK) {
        text = text.replace(MARK, table.trim_end());
    } else {
        text.push_str(&table);
    }
    std::fs::write(md, text).map_err(|e| format!("{}: {e}", md.display()))?;
    let all = serde_json::to_string_pretty(&Value::Array(reports)).map_err(|e| e.to_string())?;
    std::fs::write(json, all + "\n").map_err(|e| format!("{}: {e}", json.display()))
}
