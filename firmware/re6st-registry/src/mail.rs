//! Registration tokens and their delivery: by SMTP, or appended to an mbox
//! file when `--mailhost` is a path (absolute, or an existing file), as
//! upstream does.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};
use thiserror::Error;

pub const SUBJECT: &str = "[re6stnet] Token Request";

#[derive(Debug, Error)]
pub enum MailError {
    #[error("invalid e-mail address {0:?}")]
    BadAddress(String),
    #[error("mbox: {0}")]
    Mbox(#[from] std::io::Error),
    #[error("SMTP: {0}")]
    Smtp(String),
}

/// Where tokens go.
#[derive(Debug, Clone)]
pub enum Mailer {
    Mbox(PathBuf),
    Smtp {
        host: String,
        port: u16,
        starttls: bool,
        login: Option<(String, String)>,
    },
}

impl Mailer {
    /// Upstream's reading of `--mailhost`: a path when absolute or an
    /// existing file, else `HOST[:PORT]`.
    pub fn new(
        mailhost: &str,
        starttls: bool,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Mailer {
        let path = Path::new(mailhost);
        if path.is_absolute() || path.is_file() {
            return Mailer::Mbox(path.to_owned());
        }
        let (host, port) = match mailhost.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => (h, p.parse().unwrap_or(25)),
            _ => (mailhost, 25),
        };
        Mailer::Smtp {
            host: host.to_owned(),
            port,
            starttls,
            login: user.map(|u| (u.to_owned(), password.unwrap_or_default().to_owned())),
        }
    }

    /// Sends `token` to `to`, from `from` when the CA has an address.
    pub fn send_token(
        &self,
        from: Option<&str>,
        to: &str,
        token: &str,
        now: i64,
    ) -> Result<(), MailError> {
        let message = token_message(from, to, token)?;
        match self {
            Mailer::Mbox(path) => append_mbox(path, &message, now),
            Mailer::Smtp {
                host,
                port,
                starttls,
                login,
            } => {
                let to_addr: Address = to
                    .parse()
                    .map_err(|_| MailError::BadAddress(to.to_owned()))?;
                let from_addr: Option<Address> = from.and_then(|f| f.parse().ok());
                let envelope = Envelope::new(from_addr, vec![to_addr])
                    .map_err(|e| MailError::Smtp(e.to_string()))?;
                let mut b = SmtpTransport::builder_dangerous(host.as_str()).port(*port);
                if *starttls {
                    let tls = TlsParameters::new(host.clone())
                        .map_err(|e| MailError::Smtp(e.to_string()))?;
                    b = b.tls(Tls::Required(tls));
                }
                if let Some((user, password)) = login {
                    b = b.credentials(Credentials::new(user.clone(), password.clone()));
                }
                b.build()
                    .send_raw(&envelope, message.as_bytes())
                    .map(|_| ())
                    .map_err(|e| MailError::Smtp(e.to_string()))
            }
        }
    }
}

/// A fresh token: 8 distinct lowercase letters.
pub fn new_token(random: &[u8; 8]) -> String {
    let mut letters: Vec<u8> = (b'a'..=b'z').collect();
    let mut out = String::with_capacity(8);
    for (i, r) in random.iter().enumerate() {
        let j = i + usize::from(*r) % (letters.len() - i);
        letters.swap(i, j);
        out.push(char::from(letters[i]));
    }
    out
}

fn header_safe(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// The plain-text token message (headers as Python's `MIMEText`).
pub fn token_message(from: Option<&str>, to: &str, token: &str) -> Result<String, MailError> {
    if to.is_empty() || !header_safe(to) {
        return Err(MailError::BadAddress(to.to_owned()));
    }
    let mut m = String::from(
        "Content-Type: text/plain; charset=\"us-ascii\"\nMIME-Version: 1.0\n\
         Content-Transfer-Encoding: 7bit\n",
    );
    m.push_str(&format!("Subject: {SUBJECT}\n"));
    if let Some(f) = from.filter(|f| header_safe(f)) {
        m.push_str(&format!("From: {f}\n"));
    }
    m.push_str(&format!(
        "To: {to}\n\nHello, your token to join re6st network is: {token}\n"
    ));
    Ok(m)
}

/// `asctime`-style UTC date of the mbox `From ` line.
pub fn asctime(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    let (year, month, day) = re6st_proto::civil::ymd(days);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        year
    )
}

/// Appends a message to an mbox file (created if needed), under an
/// exclusive lock, with `From ` lines of the body escaped.
pub fn append_mbox(path: &Path, message: &str, now: i64) -> Result<(), MailError> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.lock()?;
    let mut out = String::new();
    if f.metadata()?.len() != 0 {
        out.push('\n');
    }
    out.push_str(&format!("From MAILER-DAEMON {}\n", asctime(now)));
    for line in message.lines() {
        if line.starts_with("From ") {
            out.push('>');
        }
        out.push_str(line);
        out.push('\n');
    }
    f.write_all(out.as_bytes())?;
    f.flush()?;
    f.unlock()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_letters() {
        let t = new_token(&[0, 255, 7, 7, 7, 200, 13, 99]);
        assert_eq!(t.len(), 8);
        let mut c: Vec<char> = t.chars().collect();
        assert!(c.iter().all(char::is_ascii_lowercase));
        c.sort();
        c.dedup();
        assert_eq!(c.len(), 8);
        assert_ne!(new_token(&[1; 8]), new_token(&[2; 8]));
    }

    #[test]
    fn dates() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(1_764_042_732), "Tue Nov 25 03:52:12 2025");
        assert_eq!(asctime(951_782_400), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn header_injection_refused() {
        assert!(token_message(None, "a@b\nBcc: x@y", "t").is_err());
        assert!(token_message(None, "", "t").is_err());
    }

    #[test]
    fn mailhost_kinds() {
        assert!(matches!(
            Mailer::new("/tmp/x.mbox", false, None, None),
            Mailer::Mbox(_)
        ));
        assert!(matches!(
            Mailer::new("smtp.example.com:587", true, Some("u"), Some("p")),
            Mailer::Smtp {
                port: 587,
                starttls: true,
                ..
            }
        ));
        assert!(matches!(
            Mailer::new("localhost", false, None, None),
            Mailer::Smtp { port: 25, .. }
        ));
    }

    /// Upstream's reader (Python's mailbox) finds our messages and tokens.
    #[test]
    fn mbox_readable_by_python() {
        let dir = std::env::temp_dir().join(format!("re6st-mbox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mail.mbox");
        let _ = std::fs::remove_file(&path);
        let m = Mailer::new(path.to_str().unwrap(), false, None, None);
        m.send_token(
            Some("ca@example.com"),
            "a@example.com",
            "abcdefgh",
            1_700_000_000,
        )
        .unwrap();
        m.send_token(None, "b@example.com", "ijklmnop", 1_700_000_001)
            .unwrap();
        let out = re6st_testkit::run_upstream(
            "import mailbox, sys\n\
             for m in mailbox.mbox(sys.argv[1]):\n\
             \x20   print(m['To'], m['Subject'], m.get_payload().split()[-1])",
            &[path.to_str().unwrap()],
            b"",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a@example.com [re6stnet] Token Request abcdefgh\n\
             b@example.com [re6stnet] Token Request ijklmnop\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
