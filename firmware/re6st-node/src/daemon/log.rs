//! The daemon's log lines on stderr, time-stamped like OpenVPN's (which
//! share the same output) so that events can be put side by side; under
//! systemd (stderr is the journal), sent to journald with a priority
//! instead, the journal adding its own time stamps.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use re6st_proto::civil::utc;
use tracing::Level;

/// Set once by [`init`]: whether lines go to journald.
static JOURNAL: OnceLock<bool> = OnceLock::new();

/// The tracing level of a message shown from verbosity `level` (the
/// option's scale: 1 warning, 2 info, 3 debug, 4 trace).
fn level_of(level: u8) -> Level {
    match level {
        0 => Level::ERROR,
        1 => Level::WARN,
        2 => Level::INFO,
        3 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Chooses the output once, at start: journald when our stderr is the
/// journal (a tracing subscriber, which also takes the events of the
/// libraries the node uses, filtered by `verbose`), stderr otherwise.
pub fn init(verbose: u8) {
    let journal = re6st_proto::journal::stderr_is_journal() && install_journald(verbose);
    let _ = JOURNAL.set(journal);
}

fn install_journald(verbose: u8) -> bool {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let Ok(layer) = tracing_journald::layer() else {
        return false;
    };
    let layer = layer
        .with_syslog_identifier("re6stnet".into())
        .with_filter(LevelFilter::from_level(level_of(verbose)));
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .is_ok()
}

/// Writes `msg` when the verbosity is at least `level`.
pub fn log(level: u8, verbose: u8, msg: impl std::fmt::Display) {
    if verbose >= level {
        emit(level_of(level), msg);
    }
}

/// Writes `msg` whatever the verbosity.
pub fn error(msg: impl std::fmt::Display) {
    emit(Level::ERROR, msg);
}

fn emit(level: Level, msg: impl std::fmt::Display) {
    if JOURNAL.get().copied().unwrap_or(false) {
        // tracing's macros want a level known at compile time.
        match level {
            Level::ERROR => tracing::error!("{msg}"),
            Level::WARN => tracing::warn!("{msg}"),
            Level::INFO => tracing::info!("{msg}"),
            Level::DEBUG => tracing::debug!("{msg}"),
            _ => tracing::trace!("{msg}"),
        }
        return;
    }
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "{}.{:03} re6stnet: {msg}",
        utc(t.as_secs() as i64),
        t.subsec_millis()
    );
}
