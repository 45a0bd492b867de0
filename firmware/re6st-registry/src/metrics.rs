//! The registry's `/metrics` (Prometheus text format): requests by method
//! and status code, certificates issued, request latency per method.
//!
//! Recording is a few relaxed atomic additions in fixed arrays, with no
//! lock and no allocation, so that it costs the request path nothing
//! measurable; only rendering a scrape walks the arrays.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::methods::METHODS;

/// Status codes counted by their own label; others count as "other".
const CODES: [u16; 10] = [200, 204, 400, 403, 404, 409, 414, 500, 501, 503];

/// Upper bounds (seconds) of the latency histogram's buckets; +Inf is
/// implied.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Slots of the method dimension: every method, then `/metrics`, then
/// anything else (unknown methods, bad targets).
const METRICS_SLOT: usize = METHODS.len();
const OTHER_SLOT: usize = METHODS.len() + 1;
const SLOTS: usize = METHODS.len() + 2;

/// The method label of a request target (`/name?query`).
pub fn slot_of(target: &str) -> usize {
    let path = target.split('?').next().unwrap_or("");
    if path == "/metrics" {
        return METRICS_SLOT;
    }
    let name = path.strip_prefix('/').unwrap_or(path);
    METHODS
        .iter()
        .position(|m| m.name == name)
        .unwrap_or(OTHER_SLOT)
}

fn slot_name(slot: usize) -> &'static str {
    match slot {
        METRICS_SLOT => "/metrics",
        s if s < METHODS.len() => METHODS[s].name,
        _ => "other",
    }
}

pub struct HttpMetrics {
    /// [method slot][code index, CODES.len() for "other"]
    requests: [[AtomicU64; CODES.len() + 1]; SLOTS],
    /// [method slot][bucket, BUCKETS.len() for +Inf]: not cumulative
    /// (rendering adds them up).
    latency: [[AtomicU64; BUCKETS.len() + 1]; SLOTS],
    latency_micros: [AtomicU64; SLOTS],
    certificates_issued: AtomicU64,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency_micros: std::array::from_fn(|_| AtomicU64::new(0)),
            certificates_issued: AtomicU64::new(0),
        }
    }
}

impl HttpMetrics {
    /// Counts one answered request.
    pub fn record(&self, slot: usize, status: u16, took: Duration) {
        let slot = slot.min(OTHER_SLOT);
        let code = CODES
            .iter()
            .position(|c| *c == status)
            .unwrap_or(CODES.len());
        self.requests[slot][code].fetch_add(1, Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        self.latency[slot][bucket].fetch_add(1, Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros[slot].fetch_add(micros, Relaxed);
        let issuing = ["requestCertificate", "renewCertificate"];
        if status == 200 && slot < METHODS.len() && issuing.contains(&METHODS[slot].name) {
            self.certificates_issued.fetch_add(1, Relaxed);
        }
    }

    /// The text of a scrape; `certificates` is the database's count, if
    /// it could be read.
    pub fn render(&self, certificates: Option<usize>) -> String {
        let mut out = String::new();
        out += "# HELP re6st_registry_requests_total HTTP requests answered, by method and status code.\n\
                # TYPE re6st_registry_requests_total counter\n";
        for (slot, codes) in self.requests.iter().enumerate() {
            for (i, n) in codes.iter().enumerate() {
                let n = n.load(Relaxed);
                // Methods never called stay out, except the outcomes
                // every scrape should show (0 until the first).
                if n == 0 && !(slot == METRICS_SLOT && i == 0) {
                    continue;
                }
                let code = CODES.get(i).map_or("other".to_owned(), u16::to_string);
                let _ = writeln!(
                    out,
                    "re6st_registry_requests_total{{method=\"{}\",code=\"{code}\"}} {n}",
                    slot_name(slot)
                );
            }
        }
        out += "# HELP re6st_registry_request_duration_seconds Time from a request's arrival to its answer, by method.\n\
                # TYPE re6st_registry_request_duration_seconds histogram\n";
        for slot in 0..SLOTS {
            let counts: Vec<u64> = self.latency[slot].iter().map(|c| c.load(Relaxed)).collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let method = slot_name(slot);
            let mut cumulative = 0;
            for (i, n) in counts.iter().enumerate() {
                cumulative += n;
                let le = BUCKETS.get(i).map_or("+Inf".to_owned(), f64::to_string);
                let _ = writeln!(
                    out,
                    "re6st_registry_request_duration_seconds_bucket{{method=\"{method}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = self.latency_micros[slot].load(Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "re6st_registry_request_duration_seconds_sum{{method=\"{method}\"}} {sum}\n\
                 re6st_registry_request_duration_seconds_count{{method=\"{method}\"}} {total}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP re6st_registry_certificates_issued_total Certificates signed (requestCertificate, renewCertificate) since the registry started.\n\
             # TYPE re6st_registry_certificates_issued_total counter\n\
             re6st_registry_certificates_issued_total {}",
            self.certificates_issued.load(Relaxed)
        );
        if let Some(n) = certificates {
            let _ = writeln!(
                out,
                "# HELP re6st_registry_certificates Certificates in the database.\n\
                 # TYPE re6st_registry_certificates gauge\n\
                 re6st_registry_certificates {n}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, start: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(start))
            .and_then(|v| v.trim().parse().ok())
    }

    #[test]
    fn counts_requests_certificates_and_latency() {
        let m = HttpMetrics::default();
        let ms = Duration::from_millis;
        m.record(slot_of("/requestCertificate?token=x&req=y"), 200, ms(3));
        m.record(slot_of("/renewCertificate?cn=1"), 200, ms(30));
        m.record(slot_of("/renewCertificate?cn=1"), 400, ms(1));
        m.record(
            slot_of("/hello?client_prefix=0"),
            200,
            Duration::from_micros(200),
        );
        m.record(slot_of("/nosuch"), 400, ms(0));
        m.record(slot_of("/metrics"), 403, ms(0));
        m.record(slot_of("/versions"), 299, ms(20_000));
        let text = m.render(Some(2));
        let v = |start: &str| line_value(&text, start).unwrap_or_else(|| panic!("{start}\n{text}"));
        assert_eq!(v("re6st_registry_certificates_issued_total "), 2);
        assert_eq!(v("re6st_registry_certificates "), 2);
        let req = "re6st_registry_requests_total";
        assert_eq!(
            v(&format!(
                "{req}{{method=\"renewCertificate\",code=\"200\"}}"
            )),
            1
        );
        assert_eq!(
            v(&format!(
                "{req}{{method=\"renewCertificate\",code=\"400\"}}"
            )),
            1
        );
        assert_eq!(v(&format!("{req}{{method=\"other\",code=\"400\"}}")), 1);
        assert_eq!(v(&format!("{req}{{method=\"/metrics\",code=\"403\"}}")), 1);
        assert_eq!(v(&format!("{req}{{method=\"/metrics\",code=\"200\"}}")), 0);
        assert_eq!(
            v(&format!("{req}{{method=\"versions\",code=\"other\"}}")),
            1
        );
        assert!(!text.contains("method=\"getCa\""), "{text}");
        let h = "re6st_registry_request_duration_seconds";
        // 3 ms: above the 2.5 ms bucket, within 5 ms.
        let rc = "method=\"requestCertificate\"";
        assert_eq!(v(&format!("{h}_bucket{{{rc},le=\"0.0025\"}}")), 0);
        assert_eq!(v(&format!("{h}_bucket{{{rc},le=\"0.005\"}}")), 1);
        assert_eq!(v(&format!("{h}_bucket{{{rc},le=\"+Inf\"}}")), 1);
        assert_eq!(v(&format!("{h}_count{{method=\"renewCertificate\"}}")), 2);
        assert_eq!(
            v(&format!("{h}_bucket{{method=\"versions\",le=\"10\"}}")),
            0
        );
        assert_eq!(
            v(&format!("{h}_bucket{{method=\"versions\",le=\"+Inf\"}}")),
            1
        );
        assert!(text.contains(&format!("{h}_sum{{method=\"renewCertificate\"}} 0.031\n")));
        assert!(!m.render(None).contains("re6st_registry_certificates "));
    }
}
