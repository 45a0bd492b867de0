//! Whether a daemon's stderr is the systemd journal, so that the node, the
//! registry and init log there with priorities rather than as plain lines.
//! (The one place in this crate that looks at the process: shared by all
//! three daemons, and as small as a format parser.)

/// Whether `journal_stream` (the value of `JOURNAL_STREAM`, `DEV:INODE`)
/// names the stream with device and inode `stderr`.
pub fn is_journal_stream(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let parsed = journal_stream
        .and_then(|v| v.split_once(':'))
        .and_then(|(dev, ino)| Some((dev.parse().ok()?, ino.parse().ok()?)));
    parsed.is_some() && parsed == stderr
}

/// Whether our stderr is connected to the journal: systemd sets
/// `JOURNAL_STREAM` for a service whose output goes there (a child whose
/// stderr was redirected inherits the variable but not the stream).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let var = std::env::var("JOURNAL_STREAM").ok();
    let stderr = std::fs::metadata("/proc/self/fd/2")
        .ok()
        .map(|m| (m.dev(), m.ino()));
    is_journal_stream(var.as_deref(), stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_be_our_stderr() {
        assert!(is_journal_stream(Some("8:1234"), Some((8, 1234))));
        assert!(!is_journal_stream(Some("8:1234"), Some((8, 999))));
        assert!(!is_journal_stream(Some("8:1234"), None));
        assert!(!is_journal_stream(None, Some((8, 1234))));
        assert!(!is_journal_stream(Some("garbage"), Some((8, 1234))));
        assert!(!is_journal_stream(Some("8:x"), Some((8, 1234))));
    }
}
