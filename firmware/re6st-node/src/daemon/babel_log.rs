//! babeld's log, kept bounded.
//!
//! Stock babeld 1.12 with HMAC keys can get stuck repeating "send_pc: no
//! space left to accumulate pc" / "Couldn't add HMAC" as fast as it can:
//! tens of millions of lines (gigabytes) within minutes in our tests,
//! enough to fill a router's flash or RAM disk. So babeld logs to a pipe
//! and the daemon writes at most [`BURST`] lines per [`WINDOW`] seconds to
//! the file, counts the rest, and starts the file afresh beyond
//! [`MAX_BYTES`] (keeping the previous one as `.1`).

use std::path::{Path, PathBuf};

use std::io::Write;

use tokio::io::AsyncBufReadExt;

use super::run::mono;

/// Lines written per window; the rest are counted.
pub const BURST: u32 = 200;
/// Seconds of a window.
pub const WINDOW: i64 = 60;
/// Size beyond which the file is rotated.
pub const MAX_BYTES: u64 = 1 << 20;

/// What to do with lines as they come (sans-IO).
#[derive(Debug, Default)]
pub struct Budget {
    window_start: i64,
    written: u32,
    suppressed: u64,
}

impl Budget {
    /// The text to write for `line` arriving at `now`, if any (with a note
    /// about the lines suppressed in the previous window).
    pub fn admit(&mut self, now: i64, line: &str) -> Option<String> {
        let mut out = String::new();
        if now - self.window_start >= WINDOW {
            if self.suppressed > 0 {
                out += &format!(
                    "re6st: {} babeld log lines suppressed (more than {BURST} in {WINDOW} s)\n",
                    self.suppressed
                );
            }
            *self = Budget {
                window_start: now,
                ..Budget::default()
            };
        }
        if self.written < BURST {
            self.written += 1;
            out += line;
            out.push('\n');
        } else {
            self.suppressed += 1;
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Copies babeld's stderr to `path` within the budget, until babeld exits.
/// (Plain blocking writes: at most [`BURST`] short lines a minute.)
pub async fn pump(stderr: tokio::process::ChildStderr, path: PathBuf) {
    // Bytes, not text: a line that is not UTF-8 must not end the copy
    // (babeld would then die of SIGPIPE at its next line).
    let mut reader = tokio::io::BufReader::new(stderr);
    let mut raw = Vec::new();
    let mut budget = Budget::default();
    let mut file = open(&path);
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&raw);
        let Some(text) = budget.admit(mono(), line.trim_end_matches('\n')) else {
            continue;
        };
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        if size > MAX_BYTES {
            let mut old = path.clone().into_os_string();
            old.push(".1");
            let _ = std::fs::rename(&path, PathBuf::from(old));
            file = open(&path);
        }
        if let Some(f) = file.as_mut() {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

fn open(path: &Path) -> Option<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_and_counted_then_logging_resumes() {
        let mut b = Budget::default();
        let written = (0..1000)
            .filter(|i| b.admit(100 + i / 100, "send_pc: no space").is_some())
            .count();
        assert_eq!(written, BURST as usize);
        // The next window starts with the count of what was dropped.
        let text = b.admit(100 + WINDOW, "Couldn't add HMAC.").unwrap();
        assert_eq!(
            text,
            format!(
                "re6st: 800 babeld log lines suppressed (more than {BURST} in {WINDOW} s)\nCouldn't add HMAC.\n"
            )
        );
        // A quiet babeld is logged in full.
        assert!(b.admit(100 + WINDOW + 1, "ok").is_some());
    }
}
