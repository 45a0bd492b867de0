//! The control socket, `run/re6st-init/control` under the root: a client
//! connects, writes one command line, reads the answer until the server
//! closes. Commands: `status`, `log`, `reboot`, `poweroff`, `halt`.
//! The socket is mode 0600: only root talks to init.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Where the socket lives, relative to the root.
pub const SOCKET: &str = "run/re6st-init/control";

/// Longest command line we read.
const MAX_REQUEST: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    Reboot,
    Poweroff,
    Halt,
}

impl Shutdown {
    pub fn name(self) -> &'static str {
        match self {
            Shutdown::Reboot => "reboot",
            Shutdown::Poweroff => "poweroff",
            Shutdown::Halt => "halt",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Status,
    Log,
    Shutdown(Shutdown),
}

impl Request {
    pub fn parse(line: &str) -> Option<Request> {
        Some(match line.trim() {
            "status" => Request::Status,
            "log" => Request::Log,
            "reboot" => Request::Shutdown(Shutdown::Reboot),
            "poweroff" => Request::Shutdown(Shutdown::Poweroff),
            "halt" => Request::Shutdown(Shutdown::Halt),
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Log => "log",
            Request::Shutdown(s) => s.name(),
        }
    }
}

pub fn socket_path(root: &Path) -> PathBuf {
    root.join(SOCKET)
}

/// Binds the socket, replacing a stale one left by a previous run.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Reads one request from a connection; `Err` carries the answer for a
/// bad one.
pub async fn read_request(stream: &mut UnixStream) -> Result<Request, String> {
    let mut line = String::new();
    let mut reader = BufReader::new(stream).take(MAX_REQUEST);
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
    match read {
        Ok(Ok(_)) => Request::parse(&line).ok_or_else(|| {
            format!(
                "unknown command {:?}; commands: status log reboot poweroff halt\n",
                line.trim()
            )
        }),
        _ => Err("no command received\n".into()),
    }
}

pub async fn write_answer(stream: &mut UnixStream, answer: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach init at {0}: {1}")]
    Connect(PathBuf, std::io::Error),
    #[error("talking to init: {0}")]
    Io(std::io::Error),
    #[error("init did not answer in time")]
    Timeout,
}

/// Sends `request` and returns the answer.
pub async fn send(root: &Path, request: Request) -> Result<String, ClientError> {
    let path = socket_path(root);
    let exchange = async {
        let mut stream = UnixStream::connect(&path)
            .await
            .map_err(|e| ClientError::Connect(path.clone(), e))?;
        stream
            .write_all(format!("{}\n", request.as_str()).as_bytes())
            .await
            .map_err(ClientError::Io)?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .await
            .map_err(ClientError::Io)?;
        Ok(answer)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| ClientError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Status,
            Request::Log,
            Request::Shutdown(Shutdown::Reboot),
            Request::Shutdown(Shutdown::Poweroff),
            Request::Shutdown(Shutdown::Halt),
        ] {
            assert_eq!(Request::parse(r.as_str()), Some(r));
            assert_eq!(Request::parse(&format!(" {}\n", r.as_str())), Some(r));
        }
        for bad in ["", "STATUS", "reboot now", "kill"] {
            assert_eq!(Request::parse(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn serves_one_request_per_connection() {
        let root = std::env::temp_dir().join(format!("re6st-init-ctl-{}", std::process::id()));
        let path = socket_path(&root);
        let listener = bind(&path).unwrap();
        // Binding again replaces the stale socket.
        drop(listener);
        let listener = bind(&path).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().await.unwrap();
                let answer = match read_request(&mut s).await {
                    Ok(r) => format!("got {}\n", r.as_str()),
                    Err(e) => e,
                };
                write_answer(&mut s, &answer).await;
            }
        });
        assert_eq!(send(&root, Request::Status).await.unwrap(), "got status\n");
        let mut raw = UnixStream::connect(&path).await.unwrap();
        raw.write_all(b"frobnicate\n").await.unwrap();
        let mut answer = String::new();
        raw.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.starts_with("unknown command \"frobnicate\""),
            "{answer}"
        );
        server.await.unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert!(matches!(
            send(&root, Request::Log).await,
            Err(ClientError::Connect(..))
        ));
    }
}
