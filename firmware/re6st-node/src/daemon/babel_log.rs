//! babeld's log, kept bounded and readable.
//!
//! Stock babeld 1.12 with HMAC keys can get stuck repeating "send_pc: no
//! space left to accumulate pc" / "Couldn't add HMAC" as fast as it can:
//! tens of millions of lines (gigabytes) within minutes in our tests,
//! enough to fill a router's flash or RAM disk. So babeld logs to a pipe
//! and the daemon writes its lines to the file time-stamped (babeld's own
//! lines have no time, and the start of a flood is what tells its cause);
//! a line already written in the current [`WINDOW`] is counted, not
//! written again (at its end, one line per repeated text says how often);
//! at most [`BURST`] lines per window are written, the rest counted; and
//! the file starts afresh beyond [`MAX_BYTES`] (keeping the previous one
//! as `.1`).

use std::path::{Path, PathBuf};

use std::io::Write;

use tokio::io::AsyncBufReadExt;

use super::clock::mono;
use super::log::stamp;

/// Lines written per window; the rest are counted.
pub const BURST: u32 = 200;
/// Seconds of a window.
pub const WINDOW: i64 = 60;
/// Size beyond which the file is rotated.
pub const MAX_BYTES: u64 = 1 << 20;
/// Distinct texts remembered per window to count their repeats (babeld's
/// messages are few; beyond this, lines are only rate-limited).
const REMEMBERED: usize = 32;
/// Longest line kept (babeld's are short; a longer one is cut).
const MAX_LINE: usize = 400;

/// What to do with lines as they come (sans-IO).
#[derive(Debug, Default)]
pub struct Budget {
    window_start: i64,
    written: u32,
    suppressed: u64,
    /// Texts written in this window, with how often they came again.
    seen: Vec<(String, u64)>,
}

impl Budget {
    /// The text to write for `line` arriving at `now` (monotonic seconds),
    /// if any: the line itself, after the summary of the previous window
    /// when this one starts, time-stamped by `stamp` (asked only when
    /// something is written: not for each line of a flood).
    pub fn admit(
        &mut self,
        now: i64,
        stamp: impl FnOnce() -> String,
        line: &str,
    ) -> Option<String> {
        let ended = (now - self.window_start >= WINDOW).then(|| {
            std::mem::replace(
                self,
                Budget {
                    window_start: now,
                    ..Budget::default()
                },
            )
        });
        let line = cut(line);
        let write = if let Some((_, n)) = self.seen.iter_mut().find(|(l, _)| l == line) {
            *n += 1;
            false
        } else if self.written < BURST {
            self.written += 1;
            if self.seen.len() < REMEMBERED {
                self.seen.push((line.to_owned(), 0));
            }
            true
        } else {
            self.suppressed += 1;
            false
        };
        if !write && ended.is_none() {
            return None;
        }
        let stamp = stamp();
        let mut out = ended.map_or_else(String::new, |b| b.summary(&stamp));
        if write {
            out += &format!("{stamp} {line}\n");
        }
        (!out.is_empty()).then_some(out)
    }

    /// What the window that ends says about the lines it did not write.
    fn summary(&self, stamp: &str) -> String {
        let mut out = String::new();
        for (line, n) in self.seen.iter().filter(|(_, n)| *n > 0) {
            out += &format!("{stamp} re6st: {n} more times in {WINDOW} s: {line}\n");
        }
        if self.suppressed > 0 {
            out += &format!(
                "{stamp} re6st: {} other babeld log lines suppressed (more than {BURST} in {WINDOW} s)\n",
                self.suppressed
            );
        }
        out
    }
}

/// `line` cut to [`MAX_LINE`] bytes, on a character boundary.
fn cut(line: &str) -> &str {
    if line.len() <= MAX_LINE {
        return line;
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
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
        let Some(text) = budget.admit(mono(), stamp, line.trim_end_matches('\n')) else {
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
            .filter(|i| {
                b.admit(100 + i / 100, || "T".into(), &format!("line {i}"))
                    .is_some()
            })
            .count();
        assert_eq!(written, BURST as usize);
        // The next window starts with the count of what was dropped.
        let text = b
            .admit(100 + WINDOW, || "U".into(), "Couldn't add HMAC.")
            .unwrap();
        assert_eq!(
            text,
            format!(
                "U re6st: 800 other babeld log lines suppressed (more than {BURST} in {WINDOW} s)\nU Couldn't add HMAC.\n"
            )
        );
        // A quiet babeld is logged in full.
        assert!(b.admit(100 + WINDOW + 1, || "V".into(), "ok").is_some());
    }

    #[test]
    fn a_repeated_line_is_written_once_per_window_with_its_count() {
        let mut b = Budget::default();
        let mut out = String::new();
        // Two alternating lines, as babeld's HMAC flood writes them, and
        // another line in between: each is written once, with its time.
        for i in 0..10_000 {
            let line = if i % 2 == 0 {
                "add_hmac: no link-local address."
            } else {
                "Couldn't add HMAC."
            };
            out += &b.admit(100, || format!("t{i}"), line).unwrap_or_default();
            if i == 5 {
                out += &b
                    .admit(
                        100,
                        || "t5".into(),
                        "Interface re6stnet2 has no link-local address.",
                    )
                    .unwrap_or_default();
            }
        }
        assert_eq!(
            out,
            "t0 add_hmac: no link-local address.\nt1 Couldn't add HMAC.\n\
             t5 Interface re6stnet2 has no link-local address.\n"
        );
        // The repeats do not use up the window's budget, nor ask the time.
        assert_eq!(b.written, 3);
        assert_eq!(
            b.admit(
                100,
                || unreachable!("the time of a repeat"),
                "Couldn't add HMAC."
            ),
            None
        );
        let next = b.admit(100 + WINDOW, || "t9".into(), "ok").unwrap();
        assert_eq!(
            next,
            "t9 re6st: 4999 more times in 60 s: add_hmac: no link-local address.\n\
             t9 re6st: 5000 more times in 60 s: Couldn't add HMAC.\n\
             t9 ok\n"
        );
        // A new window writes the line again.
        assert_eq!(
            b.admit(100 + WINDOW, || "t10".into(), "Couldn't add HMAC.")
                .unwrap(),
            "t10 Couldn't add HMAC.\n"
        );
    }

    #[test]
    fn a_long_line_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_LINE);
        let mut b = Budget::default();
        let text = b.admit(0, || "T".into(), &long).unwrap();
        assert!(text.len() <= MAX_LINE + 3, "{}", text.len());
        assert!(text.starts_with("T éé"));
    }
}
