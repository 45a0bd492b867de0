//! When to restart a child that exited (babeld): at once the first time,
//! then after a delay that doubles at each exit in a row, up to a ceiling;
//! a child that ran long enough before exiting starts the count over.
//! Sans-IO: time is given (seconds of a monotonic clock), the event loop
//! keeps the timer.

/// The first delay, in seconds.
const FIRST: u64 = 1;
/// The longest delay, in seconds.
const CEILING: u64 = 60;
/// A child that ran this long (seconds) before exiting is restarted after
/// the first delay again.
pub const RESET_AFTER: u64 = 300;

#[derive(Debug)]
pub struct RestartBackoff {
    next: u64,
    started: u64,
}

impl RestartBackoff {
    /// For a child started at `now`.
    pub fn new(now: u64) -> RestartBackoff {
        RestartBackoff {
            next: FIRST,
            started: now,
        }
    }

    /// The child exited at `now`: how many seconds to wait before
    /// starting it again.
    pub fn on_exit(&mut self, now: u64) -> u64 {
        if now.saturating_sub(self.started) >= RESET_AFTER {
            self.next = FIRST;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(CEILING);
        delay
    }

    /// The child was started again at `now`.
    pub fn on_start(&mut self, now: u64) {
        self.started = now;
    }

    /// Starting it failed at `now`: how long to wait before trying again
    /// (the delay grows as for an exit).
    pub fn on_start_failed(&mut self, now: u64) -> u64 {
        self.started = now;
        self.on_exit(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_a_minute_and_start_over_after_a_long_run() {
        let mut b = RestartBackoff::new(0);
        let mut now = 10;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let d = b.on_exit(now);
            delays.push(d);
            now += d;
            b.on_start(now);
            now += 5;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        // Five minutes of running: the next exit waits 1 s again.
        now += RESET_AFTER;
        assert_eq!(b.on_exit(now), 1);
        b.on_start(now + 1);
        assert_eq!(b.on_exit(now + 3), 2);
    }

    #[test]
    fn a_failed_start_waits_longer_each_time() {
        let mut b = RestartBackoff::new(0);
        assert_eq!(b.on_exit(3), 1);
        assert_eq!(b.on_start_failed(4), 2);
        assert_eq!(b.on_start_failed(6), 4);
    }
}
