//! The connection to babeld's read-write control socket.

use std::path::Path;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;

use super::control::{parse_line, Line};
use super::table::Table;

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
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    /// The line being read, its allocation reused for the next: a dump is
    /// hundreds of lines.
    line: String,
    writer: OwnedWriteHalf,
    timeout: Duration,
}

impl BabelClient {
    /// Connects and reads the greeting.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<BabelClient, ClientError> {
        let stream = UnixStream::connect(path).await?;
        let (r, w) = stream.into_split();
        let mut c = BabelClient {
            reader: BufReader::new(r),
            line: String::new(),
            writer: w,
            timeout,
        };
        c.next_line().await?;
        if !c.line.starts_with("BABEL 1.") {
            return Err(ClientError::Greeting(std::mem::take(&mut c.line)));
        }
        c.until_ok(|_| {}).await?;
        Ok(c)
    }

    /// Reads the next line into `self.line`, without its line feed.
    async fn next_line(&mut self) -> Result<(), ClientError> {
        self.line.clear();
        match tokio::time::timeout(self.timeout, self.reader.read_line(&mut self.line)).await {
            Err(_) => Err(ClientError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(0)) => Err(ClientError::Closed),
            Ok(Ok(_)) => {
                if self.line.ends_with('\n') {
                    self.line.pop();
                }
                Ok(())
            }
        }
    }

    /// Reads lines until `ok`, giving each to `each` as it comes;
    /// unparsable lines are skipped (a newer babeld may say more than we
    /// know).
    async fn until_ok(&mut self, mut each: impl FnMut(Line)) -> Result<(), ClientError> {
        loop {
            self.next_line().await?;
            match parse_line(&self.line) {
                Ok(Line::Ok) => return Ok(()),
                Ok(Line::No | Line::Bad) => {
                    return Err(ClientError::Refused(std::mem::take(&mut self.line)))
                }
                Ok(l) => each(l),
                Err(_) => {}
            }
        }
    }

    async fn send(&mut self, request: &str) -> Result<(), ClientError> {
        self.writer
            .write_all(format!("{request}\n").as_bytes())
            .await?;
        Ok(())
    }

    /// Sends one request and returns the lines of its answer.
    pub async fn request(&mut self, request: &str) -> Result<Vec<Line>, ClientError> {
        self.send(request).await?;
        let mut out = Vec::new();
        self.until_ok(|l| out.push(l)).await?;
        Ok(out)
    }

    /// The whole state: interfaces, neighbours, routes.
    pub async fn dump(&mut self) -> Result<Vec<Line>, ClientError> {
        self.request("dump").await
    }

    /// The whole state, applied line by line to a new table (no list of
    /// lines kept on the way: the node dumps often).
    pub async fn dump_table(&mut self) -> Result<Table, ClientError> {
        self.send("dump").await?;
        let mut t = Table::default();
        self.until_ok(|l| t.apply(l)).await?;
        Ok(t)
    }
}
