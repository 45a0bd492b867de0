//! Where init's log goes: the console (PID 1's stderr is /dev/console) or,
//! under systemd, journald; and always a RAM ring buffer of recent lines,
//! served by the control socket (`re6st init log`), since the root
//! filesystem is read-only and the console may have scrolled away.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter::LevelFilter, Layer};

/// Bounded by lines and by bytes, so a chatty service can't eat the RAM.
#[derive(Debug)]
struct Ring {
    lines: VecDeque<String>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
}

impl Ring {
    /// Counts each line with its newline, as [`RingLog::contents`] shows it.
    fn push(&mut self, line: String) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.lines.len() > self.max_lines || self.bytes > self.max_bytes {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len() + 1,
                None => break,
            }
        }
    }
}

/// A shared ring buffer of log lines.
#[derive(Debug, Clone)]
pub struct RingLog(Arc<Mutex<Ring>>);

impl RingLog {
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        RingLog(Arc::new(Mutex::new(Ring {
            lines: VecDeque::new(),
            bytes: 0,
            max_lines,
            max_bytes,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Ring) -> T) -> T {
        // A panic elsewhere must not take the log down with it.
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Appends text, one entry per line.
    pub fn append(&self, text: &str) {
        self.with(|r| {
            for line in text.lines() {
                r.push(line.to_owned());
            }
        });
    }

    /// The buffered lines, oldest first, each ending in a newline.
    pub fn contents(&self) -> String {
        self.with(|r| {
            let mut out = String::with_capacity(r.bytes);
            for l in &r.lines {
                out.push_str(l);
                out.push('\n');
            }
            out
        })
    }
}

/// Collects one formatted event and appends it on drop.
pub struct RingWriter {
    ring: RingLog,
    buf: Vec<u8>,
}

impl io::Write for RingWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for RingWriter {
    fn drop(&mut self) {
        self.ring.append(&String::from_utf8_lossy(&self.buf));
    }
}

impl<'a> MakeWriter<'a> for RingLog {
    type Writer = RingWriter;
    fn make_writer(&'a self) -> RingWriter {
        RingWriter {
            ring: self.clone(),
            buf: Vec::new(),
        }
    }
}

/// Installs the global subscriber: ring buffer plus journald (under
/// systemd, when not PID 1) or the console. `verbose` lowers the level to
/// debug.
pub fn init(ring: &RingLog, verbose: bool, pid1: bool) {
    let level = if verbose {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let ring_layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
        .with_writer(ring.clone())
        .with_filter(level);
    let journald = if !pid1 && re6st_proto::journal::stderr_is_journal() {
        tracing_journald::layer().ok()
    } else {
        None
    };
    let console = match journald {
        Some(_) => None,
        None => Some(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_target(false)
                .with_writer(io::stderr)
                .with_filter(level),
        ),
    };
    // A second init in the same process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(ring_layer)
        .with(journald.map(|j| j.with_filter(level)))
        .with(console)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn keeps_the_newest_lines_within_bounds() {
        let ring = RingLog::new(3, 1000);
        for i in 0..5 {
            ring.append(&format!("line {i}"));
        }
        assert_eq!(ring.contents(), "line 2\nline 3\nline 4\n");
        let ring = RingLog::new(100, 10);
        ring.append("aaaa\nbbbb\ncccc\ndddd");
        assert_eq!(ring.contents(), "cccc\ndddd\n");
        // One line larger than the bound leaves nothing rather than overflow.
        ring.append(&"x".repeat(50));
        assert_eq!(ring.contents(), "");
    }

    #[test]
    fn writer_appends_on_drop() {
        let ring = RingLog::new(10, 1000);
        {
            let mut w = ring.make_writer();
            write!(w, "hello ").unwrap();
            writeln!(w, "world").unwrap();
            assert_eq!(ring.contents(), "");
        }
        assert_eq!(ring.contents(), "hello world\n");
    }

    #[test]
    fn events_reach_the_ring() {
        let ring = RingLog::new(10, 10_000);
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(ring.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(service = "babeld", "started");
        });
        let text = ring.contents();
        assert!(text.contains("INFO"), "{text}");
        assert!(text.contains("started service=\"babeld\""), "{text}");
    }
}
