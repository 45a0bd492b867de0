//! Choosing the wall-clock time on a router without a battery-backed clock.
//!
//! Sources, by trust: NTP (when a server answers), the `Date` header of a
//! registry answer, and the last time saved on the data partition (written
//! periodically and at shutdown). The saved time, and the time the image
//! was built, are a floor: the clock never goes below them, whatever a
//! network source claims, so certificates that were valid yesterday stay
//! valid after a power cut. Pure: the caller reads and sets the clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Differences below this are not worth a clock step: an HTTP date has
/// one-second resolution and arrives after a round trip.
pub const TOLERANCE: Duration = Duration::from_secs(2);

/// How often the running system saves its time.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    Ntp,
    HttpDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The clock is fine.
    Keep,
    /// Step the clock to this time.
    Set(SystemTime),
}

/// The lowest time the clock may show: the latest of the known floors.
pub fn floor(candidates: impl IntoIterator<Item = Option<SystemTime>>) -> Option<SystemTime> {
    candidates.into_iter().flatten().max()
}

/// Decides whether to step the clock, given the current reading `now`, the
/// `floor`, and a time `observed` from the network, if any.
pub fn decide(
    now: SystemTime,
    floor: Option<SystemTime>,
    observed: Option<SystemTime>,
) -> Decision {
    let target = match (observed, floor) {
        (Some(t), Some(f)) => t.max(f),
        (Some(t), None) => t,
        (None, Some(f)) if now < f => f,
        (None, _) => return Decision::Keep,
    };
    let off = match target.duration_since(now) {
        Ok(ahead) => ahead,
        Err(behind) => behind.duration(),
    };
    if off <= TOLERANCE {
        Decision::Keep
    } else {
        Decision::Set(target)
    }
}

/// The saved time file: decimal seconds since the Unix epoch.
pub fn encode_saved(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{secs}\n")
}

/// Reads a saved time; `None` if damaged (a torn write, garbage).
pub fn decode_saved(data: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(data).ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = text.parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Parses an HTTP `Date` header value in any of the three RFC 7231 forms
/// (IMF-fixdate, obsolete RFC 850, asctime).
pub fn parse_http_date(value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    httpdate::parse_http_date(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const SAVED: u64 = 1_700_000_000;

    #[test]
    fn boot_at_epoch_jumps_to_saved_time() {
        assert_eq!(decide(t(0), Some(t(SAVED)), None), Decision::Set(t(SAVED)));
    }

    #[test]
    fn no_source_no_floor_keeps_clock() {
        assert_eq!(decide(t(5), None, None), Decision::Keep);
        // A clock already past the floor (RTC, or saved a while ago) stays.
        assert_eq!(decide(t(SAVED + 100), Some(t(SAVED)), None), Decision::Keep);
    }

    #[test]
    fn network_time_wins_above_the_floor() {
        let now = t(SAVED);
        let real = t(SAVED + 86_400);
        assert_eq!(decide(now, Some(t(SAVED)), Some(real)), Decision::Set(real));
        // Also backwards, if the clock ran ahead but not below the floor.
        let ahead = t(SAVED + 10 * 86_400);
        assert_eq!(
            decide(ahead, Some(t(SAVED)), Some(real)),
            Decision::Set(real)
        );
    }

    #[test]
    fn never_below_the_saved_time() {
        let stale = t(SAVED - 3600);
        assert_eq!(
            decide(t(0), Some(t(SAVED)), Some(stale)),
            Decision::Set(t(SAVED))
        );
        assert_eq!(
            decide(t(SAVED + 50), Some(t(SAVED)), Some(stale)),
            Decision::Set(t(SAVED))
        );
        // Already at the floor: nothing to do.
        assert_eq!(
            decide(t(SAVED), Some(t(SAVED)), Some(stale)),
            Decision::Keep
        );
    }

    #[test]
    fn small_differences_are_ignored() {
        assert_eq!(decide(t(SAVED), None, Some(t(SAVED + 2))), Decision::Keep);
        assert_eq!(decide(t(SAVED + 2), None, Some(t(SAVED))), Decision::Keep);
        assert_eq!(
            decide(t(SAVED), None, Some(t(SAVED + 3))),
            Decision::Set(t(SAVED + 3))
        );
    }

    #[test]
    fn floor_is_the_latest_known() {
        assert_eq!(
            floor([None, Some(t(3)), Some(t(9)), Some(t(1))]),
            Some(t(9))
        );
        assert_eq!(floor([None, None]), None);
    }

    #[test]
    fn saved_time_round_trip_and_damage() {
        assert_eq!(encode_saved(t(SAVED)), "1700000000\n");
        assert_eq!(decode_saved(b"1700000000\n"), Some(t(SAVED)));
        for bad in [
            &b""[..],
            b"\n",
            b"-1",
            b"17000x",
            b"1e9",
            b"\xff",
            b"99999999999999999999999",
        ] {
            assert_eq!(decode_saved(bad), None, "{bad:?}");
        }
        assert_eq!(encode_saved(UNIX_EPOCH - Duration::from_secs(5)), "0\n");
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        // The examples of RFC 7231 section 7.1.1.1.
        let want = Some(t(784_111_777));
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), want);
        assert_eq!(parse_http_date(b" Sun, 06 Nov 1994 08:49:37 GMT "), want);
        for bad in [
            &b""[..],
            b"yesterday",
            b"Sun, 32 Nov 1994 08:49:37 GMT",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_below_floor(now in 0u64..4_000_000_000, fl in proptest::option::of(0u64..4_000_000_000), obs in proptest::option::of(0u64..4_000_000_000)) {
            let d = decide(t(now), fl.map(t), obs.map(t));
            let result = match d { Decision::Keep => t(now), Decision::Set(x) => x };
            if let Some(f) = fl {
                // Either the clock was set at or above the floor, or it was
                // kept because it was already close to the target.
                match d {
                    Decision::Set(x) => proptest::prop_assert!(x >= t(f)),
                    Decision::Keep => proptest::prop_assert!(result + TOLERANCE >= t(f)),
                }
            }
        }

        #[test]
        fn saved_round_trip(secs in 0u64..u64::from(u32::MAX) * 4) {
            proptest::prop_assert_eq!(decode_saved(encode_saved(t(secs)).as_bytes()), Some(t(secs)));
        }

        #[test]
        fn http_date_round_trip(secs in 0u64..253_402_300_799) {
            let text = httpdate::fmt_http_date(t(secs));
            proptest::prop_assert_eq!(parse_http_date(text.as_bytes()), Some(t(secs)));
        }
    }
}
