//! The daemon's log, through `tracing` like the other crates: on stderr,
//! time-stamped like OpenVPN's lines (which share the same output) so that
//! events can be put side by side; under systemd (stderr is the journal),
//! to journald with a priority instead, the journal adding its own time
//! stamps. Either way the events of the libraries the node uses come too,
//! filtered by `--verbose`.

use std::time::{SystemTime, UNIX_EPOCH};

use re6st_proto::civil::utc;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

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

/// Now, as the node's log lines show it (`2026-12-06 01:33:15.515`).
pub fn stamp() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", utc(t.as_secs() as i64), t.subsec_millis())
}

/// `2026-12-06 01:33:15.515 re6stnet: MESSAGE`, as the node always wrote.
struct Stamped;

impl<S, N> FormatEvent<S, N> for Stamped
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "{} re6stnet: ", stamp())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the subscriber once, at start: journald when our stderr is
/// the journal (and journald answers), stderr otherwise.
pub fn init(verbose: u8) {
    let filter = LevelFilter::from_level(level_of(verbose));
    let journald = re6st_proto::journal::stderr_is_journal()
        .then(|| tracing_journald::layer().ok())
        .flatten()
        .map(|l| {
            l.with_syslog_identifier("re6stnet".into())
                .with_filter(filter)
        });
    let stderr = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .event_format(Stamped)
            .with_writer(std::io::stderr)
            .with_filter(filter)
    });
    // A second init in the same process (tests) keeps the first one.
    let _ = tracing_subscriber::registry()
        .with(journald)
        .with(stderr)
        .try_init();
}

/// Logs `msg` at verbosity `level` (shown when `--verbose` is at least
/// that: the subscriber filters).
pub fn log(level: u8, _verbose: u8, msg: impl std::fmt::Display) {
    // tracing's macros want a level known at compile time.
    match level_of(level) {
        Level::ERROR => tracing::error!("{msg}"),
        Level::WARN => tracing::warn!("{msg}"),
        Level::INFO => tracing::info!("{msg}"),
        Level::DEBUG => tracing::debug!("{msg}"),
        _ => tracing::trace!("{msg}"),
    }
}

/// Logs `msg` whatever the verbosity.
pub fn error(msg: impl std::fmt::Display) {
    tracing::error!("{msg}");
}
