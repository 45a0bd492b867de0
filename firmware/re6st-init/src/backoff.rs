//! Capped exponential back-off, shared by service restarts and
//! provisioning retries. Pure: the caller owns the clock.

use std::time::Duration;

/// How long to wait before the n-th retry: `initial * 2^(n-1)`, at most
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max }
    }

    /// Delay before retry number `attempt` (1 for the first retry; 0 means
    /// no failure yet, so no delay).
    pub fn delay(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        // 2^31 * anything overflows Duration's practical range long before
        // the cap matters; saturate instead of overflowing.
        let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

    #[test]
    fn doubles_then_caps() {
        let delays: Vec<u64> = (0..9).map(|n| B.delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn huge_attempt_counts_saturate_at_the_cap() {
        for n in [31, 32, 33, 1000, u32::MAX] {
            assert_eq!(B.delay(n), B.max, "{n}");
        }
    }

    proptest::proptest! {
        #[test]
        fn monotonic_and_bounded(n in 0u32..200, init_ms in 1u64..10_000, max_ms in 1u64..10_000_000) {
            let b = Backoff::new(Duration::from_millis(init_ms), Duration::from_millis(max_ms));
            proptest::prop_assert!(b.delay(n) <= b.delay(n + 1));
            proptest::prop_assert!(b.delay(n) <= b.max);
        }
    }
}
