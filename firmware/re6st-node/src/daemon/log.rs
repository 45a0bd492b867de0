//! The daemon's log lines on stderr, time-stamped like OpenVPN's (which
//! share the same output) so that events can be put side by side.

use std::time::{SystemTime, UNIX_EPOCH};

use re6st_proto::civil::utc;

/// Writes `msg` when the verbosity is at least `level`.
pub fn log(level: u8, verbose: u8, msg: impl std::fmt::Display) {
    if verbose >= level {
        error(msg);
    }
}

/// Writes `msg` whatever the verbosity.
pub fn error(msg: impl std::fmt::Display) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "{}.{:03} re6stnet: {msg}",
        utc(t.as_secs() as i64),
        t.subsec_millis()
    );
}
