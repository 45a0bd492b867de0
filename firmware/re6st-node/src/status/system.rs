//! The host's figures that `re6st ctl` adds to the node's status: memory
//! and uptime read with `sysinfo` (on Linux: /proc/meminfo, /proc/uptime),
//! the load from /proc/loadavg here: sysinfo parses it as `f64`, which
//! links the float parser (about 16 KB of the router's mipsel binary, its
//! only user there) for numbers the kernel writes with two decimals.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemFigures {
    pub memory_total_bytes: u64,
    /// Memory available to new programs without swapping (MemAvailable).
    pub memory_available_bytes: u64,
    /// Load averages over 1, 5 and 15 minutes, in hundredths (the
    /// kernel's own precision; integers survive any JSON round trip).
    pub load_hundredths: [u64; 3],
    pub uptime_seconds: u64,
}

/// A load in hundredths as a decimal number (`0.05`, `12.50`).
pub fn load_text(hundredths: u64) -> String {
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

impl SystemFigures {
    /// The figures of the host we run on.
    pub fn read() -> SystemFigures {
        let mut sys = sysinfo::System::new();
        sys.refresh_memory();
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        SystemFigures {
            memory_total_bytes: sys.total_memory(),
            memory_available_bytes: sys.available_memory(),
            load_hundredths: loads(&loadavg),
            uptime_seconds: sysinfo::System::uptime(),
        }
    }
}

/// The three load averages of /proc/loadavg's text in hundredths (0 for
/// what is missing or not a number).
fn loads(text: &str) -> [u64; 3] {
    let mut words = text.split_whitespace();
    [(); 3].map(|()| words.next().and_then(hundredths).unwrap_or(0))
}

/// `12.5` -> 1250, `0.05` -> 5, `3` -> 300; digits past the second
/// decimal are dropped (the kernel writes two).
fn hundredths(text: &str) -> Option<u64> {
    let (units, decimals) = text.split_once('.').unwrap_or((text, ""));
    if units.is_empty() || !decimals.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digit = |i: usize| {
        decimals
            .as_bytes()
            .get(i)
            .map_or(0, |d| u64::from(d - b'0'))
    };
    let units: u64 = units.parse().ok()?;
    units
        .checked_mul(100)?
        .checked_add(digit(0) * 10 + digit(1))
}

/// Received and sent bytes of network interface `iface` (its kernel
/// counters), if it exists in our network namespace.
pub fn iface_bytes(iface: &str) -> Option<(u64, u64)> {
    if iface.is_empty() || iface.contains('/') || iface.starts_with('.') {
        return None;
    }
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/class/net/{iface}/statistics/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some((read("rx_bytes")?, read("tx_bytes")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_hosts_figures() {
        let s = SystemFigures::read();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib = |key: &str| -> u64 {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap()
        };
        assert_eq!(s.memory_total_bytes, kib("MemTotal:") * 1024);
        assert!(s.memory_available_bytes > 0 && s.memory_available_bytes <= s.memory_total_bytes);
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (s.uptime_seconds as f64 - uptime).abs() < 5.0,
            "{s:?} vs {uptime}"
        );
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap();
        let fifteen = loadavg.split_whitespace().nth(2).unwrap();
        // Moves only every 5 s: equal, or one step (sampled across it).
        let now: f64 = fifteen.parse().unwrap();
        assert!(
            (s.load_hundredths[2] as f64 / 100.0 - now).abs() < 0.05,
            "{s:?} {loadavg}"
        );
        assert_eq!(load_text(5), "0.05");
        assert_eq!(load_text(1250), "12.50");
    }

    #[test]
    fn load_averages_in_hundredths() {
        assert_eq!(loads("0.25 0.16 0.06 1/80 1234\n"), [25, 16, 6]);
        assert_eq!(loads("12.50 3.1 7"), [1250, 310, 700]);
        assert_eq!(loads("1.234 x 0.-1"), [123, 0, 0]);
        assert_eq!(loads(""), [0, 0, 0]);
        assert_eq!(hundredths(".5"), None);
        assert_eq!(hundredths("99999999999999999999.00"), None);
    }

    #[test]
    fn loopback_has_counters_and_odd_names_none() {
        assert!(iface_bytes("lo").is_some());
        assert_eq!(iface_bytes("no-such-iface0"), None);
        assert_eq!(iface_bytes("../lo"), None);
        assert_eq!(iface_bytes(""), None);
    }
}
