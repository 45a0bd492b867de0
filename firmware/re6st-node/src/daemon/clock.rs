//! The node's clocks: the wall clock for dates, an interval clock that the
//! wall clock's jumps do not move, and both together for the core.

use re6st_node_core::node::Now;

/// Wall-clock seconds: for what is about dates (certificates, renewal,
/// the peer protocol's certificate checks).
pub(crate) fn now() -> i64 {
    (now_us() / 1_000_000) as i64
}

/// The wall clock in microseconds (the peer link's session secrets).
pub(super) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Seconds for intervals and timeouts (the tunnel manager, announcements,
/// saves, kernel checks): the wall clock when the daemon started plus the
/// monotonic time since, so that the wall clock set back (or forward) by
/// NTP or by hand neither freezes nor fires them.
pub(crate) fn mono() -> i64 {
    static START: std::sync::OnceLock<(i64, std::time::Instant)> = std::sync::OnceLock::new();
    let (wall, start) = START.get_or_init(|| (now(), std::time::Instant::now()));
    wall + start.elapsed().as_secs() as i64
}

/// The time now, for the core.
pub(super) fn clock() -> Now {
    Now {
        at: std::time::Instant::now(),
        mono: mono(),
        wall: now(),
        wall_us: now_us(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn interval_clock_starts_at_the_wall_clock_and_never_goes_back() {
        let a = mono();
        assert!((a - now()).abs() <= 2, "{a} {}", now());
        let mut last = a;
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(400));
            let b = mono();
            assert!(b >= last);
            last = b;
        }
    }
}
