//! The clock's inputs and outputs: the saved time on the data partition,
//! the image's build time, and network time (NTP, or the `Date` of a
//! registry answer). The decisions are in [`crate::clock`].

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use re6st_registry_client::call::path_and_query;
use re6st_registry_client::transport::{get, RegistryUrl};
use tracing::debug;

use crate::clock::{decode_saved, encode_saved, parse_http_date, TimeSource};

pub fn read_saved(file: &Path) -> Option<SystemTime> {
    decode_saved(&std::fs::read(file).ok()?)
}

/// Writes the time atomically and durably (a torn file would be ignored,
/// but a lost one loses the floor).
pub fn save(file: &Path, t: SystemTime) -> std::io::Result<()> {
    let tmp = file.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(encode_saved(t).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

/// In `--root` test runs: libfaketime's shared timestamp file, the clock
/// of the whole process tree (see [`set_fake_clock`]).
pub const FAKETIME_FILE_ENV: &str = "FAKETIME_TIMESTAMP_FILE";

/// Steps the libfaketime clock to `target`: the file holds an offset from
/// the real time, which we only see through that offset.
pub fn set_fake_clock(file: &Path, target: SystemTime) -> std::io::Result<()> {
    let current: i64 = std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().trim_end_matches('s').parse().ok())
        .unwrap_or(0);
    let seconds = |t: SystemTime| match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let offset = current + seconds(target) - seconds(SystemTime::now());
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{offset:+}\n"))?;
    std::fs::rename(&tmp, file)
}

/// When the image was built: the root filesystem is read-only, so the
/// modification time of a file baked into it tells.
pub fn image_time(board_defaults: &Path) -> Option<SystemTime> {
    std::fs::metadata(board_defaults).ok()?.modified().ok()
}

/// The `Date` header of the registry's answer to a cheap call (`getCa`).
pub async fn registry_date(registry: &str, timeout: Duration) -> Result<SystemTime, String> {
    let url = RegistryUrl::parse(registry).map_err(|e| e.to_string())?;
    let answer = get(&url, &path_and_query("getCa", &[]), &[], timeout)
        .await
        .map_err(|e| e.to_string())?;
    let date = answer
        .headers
        .get("date")
        .ok_or("the registry sent no Date header")?;
    parse_http_date(date.as_bytes()).ok_or_else(|| format!("unparsable Date {date:?}"))
}

/// Time from the first NTP server that answers, else from the registry.
pub async fn network_time(
    ntp: &[String],
    registry: Option<&str>,
    timeout: Duration,
) -> Result<(TimeSource, SystemTime), String> {
    let mut errors = Vec::new();
    for server in ntp {
        match crate::sntp::query(server, timeout).await {
            Ok(t) => return Ok((TimeSource::Ntp, t)),
            Err(e) => {
                debug!("NTP: {e}");
                errors.push(e.to_string());
            }
        }
    }
    if let Some(r) = registry {
        match registry_date(r, timeout).await {
            Ok(t) => return Ok((TimeSource::HttpDate, t)),
            Err(e) => errors.push(format!("registry {r}: {e}")),
        }
    }
    Err(errors.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn save_and_read_back() {
        let file = std::env::temp_dir().join(format!("re6st-init-clock-{}", std::process::id()));
        let t = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        save(&file, t).unwrap();
        assert_eq!(read_saved(&file), Some(t));
        std::fs::write(&file, "garbage").unwrap();
        assert_eq!(read_saved(&file), None);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(read_saved(&file), None);
    }

    /// A one-shot HTTP server answering with `date_header`.
    fn http_server(date_header: &'static str) -> u16 {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\n{date_header}Content-Length: 2\r\nConnection: close\r\n\r\nca"
            );
        });
        port
    }

    #[tokio::test]
    async fn date_from_the_registry() {
        let port = http_server("Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        let url = format!("http://127.0.0.1:{port}/");
        let t = registry_date(&url, Duration::from_secs(5)).await.unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(784_111_777));
        let port = http_server("");
        let url = format!("http://127.0.0.1:{port}/");
        let e = registry_date(&url, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.contains("no Date"), "{e}");
    }

    #[tokio::test]
    async fn falls_back_from_ntp_to_the_registry() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let ntp = vec![silent.local_addr().unwrap().to_string()];
        let port = http_server("Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        let url = format!("http://127.0.0.1:{port}/");
        let (source, t) = network_time(&ntp, Some(&url), Duration::from_millis(500))
            .await
            .unwrap();
        assert_eq!(source, TimeSource::HttpDate);
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(784_111_777));
        let e = network_time(&ntp, None, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(e.contains("no answer"), "{e}");
    }
}
