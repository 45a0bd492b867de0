//! `re6st-sim check`: a sweep's pass/fail expectations (issue 16's
//! targets), one line per expectation and run, so that `make sim` says
//! which one failed instead of leaving a table to be read.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The bounds a run is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// After a loss with the registry down, simulated seconds until every
    /// survivor is in one component again.
    pub rejoin_within_s: i64,
    /// Peer-protocol messages, version announcements included, per node
    /// per minute in the steady state.
    pub peer_per_min: f64,
    /// Babel dumps per minute of a node below its client count while
    /// nothing changes for it (no event for a minute, no drain: the
    /// simulator's `QUIET_S`).
    pub underconnected_dumps_per_min: f64,
}

/// Today's targets: rejoin within 60 s; at most twice the peer traffic of
/// the 1,000-node sweep of 2026-11-25 (0.92 messages + 33.2 announcements
/// a node a minute); at most 2 dumps a minute below the client count
/// while nothing changes.
pub const TARGETS: Limits = Limits {
    rejoin_within_s: 60,
    peer_per_min: 2.0 * (0.92 + 33.2),
    underconnected_dumps_per_min: 2.0,
};

fn name_of(path: &Path, r: &Value) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let seed = r.pointer("/params/seed").and_then(Value::as_u64);
    match (stem, seed) {
        (Some(s), Some(seed)) => format!("{s} (seed {seed})"),
        (Some(s), None) => s,
        (None, _) => path.display().to_string(),
    }
}

/// One "PASS"/"FAIL" line per expectation; `true` when all passed.
pub fn expectations(name: &str, r: &Value, l: &Limits, out: &mut String) -> bool {
    let mut ok = true;
    let mut line = |pass: bool, what: String| {
        ok &= pass;
        let _ = writeln!(out, "{} {name}: {what}", if pass { "PASS" } else { "FAIL" });
    };
    let loss = r.get("loss").filter(|v| !v.is_null());
    if let Some(loss) = loss.filter(|l| l["registry_down"] == Value::Bool(true)) {
        let stranded = loss["stranded_at_end"].as_u64().unwrap_or(0);
        let nat = loss["stranded_nat_at_end"].as_u64().unwrap_or(0);
        match loss["reconnected_after_s"].as_i64() {
            Some(s) if s <= l.rejoin_within_s && stranded == 0 => line(
                true,
                format!("every survivor in one component {s} s after the loss (<= {} s)", l.rejoin_within_s),
            ),
            Some(s) => line(
                false,
                format!(
                    "one component again only {s} s after the loss (> {} s), {stranded} stranded at the end",
                    l.rejoin_within_s
                ),
            ),
            None => line(
                false,
                format!("survivors never one component again: {stranded} left out at the end ({nat} NATed)"),
            ),
        }
    }
    let steady = &r["control_steady"];
    match (
        steady["peer_messages"].as_f64(),
        steady["version_announcements"].as_f64(),
    ) {
        (Some(m), Some(v)) => line(
            m + v <= l.peer_per_min,
            format!(
                "{m:.2} peer messages + {v:.1} version announcements a node a minute (<= {:.1} in all)",
                l.peer_per_min
            ),
        ),
        _ => line(false, "no steady-state peer traffic in the report".to_owned()),
    }
    let overall = steady
        .get("babel_dumps_underconnected")
        .and_then(Value::as_f64)
        .map_or_else(|| "none".to_owned(), |d| format!("{d:.2}"));
    match steady.get("babel_dumps_underconnected_quiet") {
        Some(Value::Null) => line(
            true,
            "no node below its client count while quiet (no dumps to bound)".to_owned(),
        ),
        Some(d) => match d.as_f64() {
            Some(d) => line(
                d <= l.underconnected_dumps_per_min,
                format!(
                    "{d:.2} babel dumps a minute per node below its client count while nothing changes (<= {}; {overall} all the time)",
                    l.underconnected_dumps_per_min
                ),
            ),
            None => line(
                false,
                format!("babel_dumps_underconnected_quiet is not a number: {d}"),
            ),
        },
        None => line(
            false,
            "no under-connected dump rate in the report (older re6st-sim?)".to_owned(),
        ),
    }
    ok
}

/// Checks every report; the text to print and whether all passed.
pub fn check(files: &[PathBuf], l: &Limits) -> Result<(String, bool), String> {
    let mut out = String::new();
    let mut all = true;
    for p in files {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let r: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        all &= expectations(&name_of(p, &r), &r, l, &mut out);
    }
    Ok((out, all))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(reconnected: Value, stranded: u64, peer: f64, dumps: Value) -> Value {
        json!({
            "params": {"seed": 1},
            "loss": {"registry_down": true, "reconnected_after_s": reconnected,
                     "stranded_at_end": stranded, "stranded_nat_at_end": stranded},
            "control_steady": {"peer_messages": peer, "version_announcements": 33.2,
                               "babel_dumps_underconnected_quiet": dumps},
        })
    }

    fn run(r: &Value) -> (bool, String) {
        let mut out = String::new();
        let ok = expectations("n1000-random", r, &TARGETS, &mut out);
        (ok, out)
    }

    #[test]
    fn a_run_within_every_target_passes() {
        let (ok, out) = run(&report(json!(6), 0, 0.92, json!(1.5)));
        assert!(ok, "{out}");
        assert_eq!(
            out.lines().filter(|l| l.starts_with("PASS")).count(),
            3,
            "{out}"
        );
    }

    #[test]
    fn each_missed_target_fails_and_says_which() {
        let (ok, out) = run(&report(Value::Null, 3, 0.92, json!(1.0)));
        assert!(!ok);
        assert!(
            out.contains("FAIL n1000-random: survivors never one component again: 3 left out"),
            "{out}"
        );
        let (ok, out) = run(&report(json!(61), 0, 0.92, json!(1.0)));
        assert!(!ok && out.contains("FAIL") && out.contains("61 s"), "{out}");
        let (ok, out) = run(&report(json!(6), 0, 40.0, json!(1.0)));
        assert!(
            !ok && out.contains("FAIL") && out.contains("peer messages"),
            "{out}"
        );
        let (ok, out) = run(&report(json!(6), 0, 0.92, json!(12.0)));
        assert!(
            !ok && out.contains("FAIL") && out.contains("babel dumps"),
            "{out}"
        );
    }

    #[test]
    fn a_report_without_the_figures_fails() {
        let (ok, out) = run(&json!({"params": {}, "loss": null, "control_steady": {}}));
        assert!(!ok, "{out}");
    }
}
