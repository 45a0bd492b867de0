//! The connection to babeld's read-write control socket.

use std::path::Path;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;

use super::control::{parse_line, Line};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("babeld control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("babeld closed the control socket")]
    Closed,
    #[error("babeld did not answer within {0:?}")]
    Timeout(Duration),
    #[error("babeld refused {0:?}")]
    Refused(String),
    #[error("babeld greeted with {0:?}, expected BABEL 1.x")]
    Greeting(String),
}

pub struct BabelClient {
    lines: Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    writer: OwnedWriteHalf,
    timeout: Duration,
}

impl BabelClient {
    /// Connects and reads the greeting.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<BabelClient, ClientError> {
        let stream = UnixStream::connect(path).await?;
        let (r, w) = stream.into_split();
        let mut c = BabelClient {
            lines: BufReader::new(r).lines(),
            writer: w,
            timeout,
        };
        let greeting = c.next_line().await?;
        if !greeting.starts_with("BABEL 1.") {
            return Err(ClientError::Greeting(greeting));
        }
        c.until_ok().await?;
        Ok(c)
    }

    async fn next_line(&mut self) -> Result<String, ClientError> {
        match tokio::time::timeout(self.timeout, self.lines.next_line()).await {
            Err(_) => Err(ClientError::Timeout(self.timeout)),
            Ok(r) => r?.ok_or(ClientError::Closed),
        }
    }

    /// Reads lines until `ok`; unparsable lines are skipped (a newer babeld
    /// may say more than we know).
    async fn until_ok(&mut self) -> Result<Vec<Line>, ClientError> {
        let mut out = Vec::new();
        loop {
            let raw = self.next_line().await?;
            match parse_line(&raw) {
                Ok(Line::Ok) => return Ok(out),
                Ok(Line::No | Line::Bad) => return Err(ClientError::Refused(raw)),
                Ok(l) => out.push(l),
                Err(_) => {}
            }
        }
    }

    /// Sends one request and returns the lines of its answer.
    pub async fn request(&mut self, request: &str) -> Result<Vec<Line>, ClientError> {
        self.writer
            .write_all(format!("{request}\n").as_bytes())
            .await?;
        self.until_ok().await
    }

    /// The whole state: interfaces, neighbours, routes.
    pub async fn dump(&mut self) -> Result<Vec<Line>, ClientError> {
        self.request("dump").await
    }
}
