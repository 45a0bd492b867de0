//! OpenVPN's management interface (`--management PATH unix`), one per
//! server: which clients are connected (`status 3`, with their byte
//! counts) and killing exactly one of them (`client-kill CID`), so that a
//! revoked peer is dropped without restarting the server and cutting
//! every other client. The hook scripts (`--client-connect`,
//! `--client-disconnect`) still run: only `--management-client-auth`
//! would hand them to the management client.
//!
//! [`Session`] is the sans-IO side: it turns the lines OpenVPN prints into
//! replies, whatever they are (unknown, truncated or garbage lines are
//! skipped, never a panic), and keeps at most [`MAX_CLIENTS`] rows. The
//! async side connects for one request at a time.

use std::path::Path;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Rows kept from one `status 3` (a server takes `max_clients`, which
/// the network caps far below this).
pub const MAX_CLIENTS: usize = 1024;

/// Longest line read; a longer one ends the session.
const MAX_LINE: usize = 8192;

/// Lines read for one reply at most (rows beyond [`MAX_CLIENTS`], routing
/// table, statistics): a runaway answer ends the session.
const MAX_LINES: usize = 4 * MAX_CLIENTS + 64;

/// The socket of the server on `iface`, in the run directory.
pub fn socket_path(run: &Path, iface: &str) -> std::path::PathBuf {
    run.join(format!("{iface}.mgmt"))
}

/// OpenVPN's options for a management socket at `path`.
pub fn args(path: &Path) -> [String; 3] {
    [
        "--management".into(),
        path.display().to_string(),
        "unix".into(),
    ]
}

/// A client of the server, from `status 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub common_name: String,
    /// `ip:port` (or `proto:ip:port`) the client connects from.
    pub real_address: String,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// The client ID `client-kill` takes.
    pub cid: Option<u64>,
}

/// What a request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `SUCCESS: ...`
    Success(String),
    /// `ERROR: ...`
    Error(String),
    /// A `status 3` answer (up to `END`).
    Status(Vec<Client>),
}

#[derive(Debug, Error)]
pub enum ManagementError {
    #[error("management socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("OpenVPN closed the management socket")]
    Closed,
    #[error("OpenVPN did not answer within {0:?}")]
    Timeout(Duration),
    #[error("OpenVPN refused {request:?}: {reason}")]
    Refused { request: String, reason: String },
    #[error("unexpected answer to {0:?}")]
    Unexpected(String),
    #[error("answer too long")]
    TooLong,
}

/// Column positions of `CLIENT_LIST` rows, from the `HEADER` line
/// (OpenVPN 2.6's order until one is seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Columns {
    common_name: usize,
    real_address: usize,
    bytes_received: usize,
    bytes_sent: usize,
    cid: Option<usize>,
}

impl Default for Columns {
    fn default() -> Self {
        // CLIENT_LIST, Common Name, Real Address, Virtual Address, Virtual
        // IPv6 Address, Bytes Received, Bytes Sent, Connected Since,
        // Connected Since (time_t), Username, Client ID, Peer ID, Cipher.
        Columns {
            common_name: 1,
            real_address: 2,
            bytes_received: 5,
            bytes_sent: 6,
            cid: Some(10),
        }
    }
}

impl Columns {
    /// From the fields of `HEADER\tCLIENT_LIST\tCommon Name\t...` after
    /// `HEADER`: they line up with the rows, which start with `CLIENT_LIST`.
    fn from_header(fields: &[&str]) -> Option<Columns> {
        let at = |name: &str| fields.iter().position(|f| *f == name);
        Some(Columns {
            common_name: at("Common Name")?,
            real_address: at("Real Address")?,
            bytes_received: at("Bytes Received")?,
            bytes_sent: at("Bytes Sent")?,
            cid: at("Client ID"),
        })
    }
}

/// The sans-IO side of one management connection: feed it the lines
/// OpenVPN prints after a request, it says when the reply is complete.
#[derive(Debug, Default)]
pub struct Session {
    /// Collecting a `status` answer.
    status: Option<Vec<Client>>,
    columns: Columns,
}

impl Session {
    /// The line to send for `status 3`; the next reply is its table.
    pub fn request_status(&mut self) -> &'static str {
        self.status = Some(Vec::new());
        self.columns = Columns::default();
        "status 3\n"
    }

    /// The line to send to kill the client `cid` (its reply is one line).
    pub fn request_kill(&mut self, cid: u64) -> String {
        self.status = None;
        format!("client-kill {cid}\n")
    }

    /// One line from OpenVPN (without its line end); a reply once complete.
    /// Real-time notifications (`>INFO:`, `>CLIENT:`, ...) and lines it does
    /// not know are skipped.
    pub fn feed(&mut self, line: &str) -> Option<Reply> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.starts_with('>') {
            return None;
        }
        if let Some(reason) = line.strip_prefix("ERROR:") {
            self.status = None;
            return Some(Reply::Error(reason.trim().to_owned()));
        }
        let Some(rows) = self.status.as_mut() else {
            return line
                .strip_prefix("SUCCESS:")
                .map(|m| Reply::Success(m.trim().to_owned()));
        };
        if line == "END" {
            return self.status.take().map(Reply::Status);
        }
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.first().copied() {
            Some("HEADER") if fields.get(1) == Some(&"CLIENT_LIST") => {
                if let Some(c) = Columns::from_header(&fields[1..]) {
                    self.columns = c;
                }
            }
            Some("CLIENT_LIST") if rows.len() < MAX_CLIENTS => {
                if let Some(c) = client_row(&fields, &self.columns) {
                    rows.push(c);
                }
            }
            _ => {}
        }
        None
    }
}

fn client_row(fields: &[&str], c: &Columns) -> Option<Client> {
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Client {
        common_name: (*fields.get(c.common_name)?).to_owned(),
        real_address: fields.get(c.real_address).copied().unwrap_or("").to_owned(),
        bytes_received: number(c.bytes_received).unwrap_or(0),
        bytes_sent: number(c.bytes_sent).unwrap_or(0),
        cid: c.cid.and_then(number),
    })
}

/// One connection to a server's management socket.
pub struct Management {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
    session: Session,
    timeout: Duration,
}

impl Management {
    /// Connects, waiting (up to `timeout`) while another management client
    /// holds the socket: OpenVPN serves one at a time, and refuses the
    /// others (EAGAIN seen with `ctl status` asking for byte counts while
    /// a connection was being dropped).
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Management, ManagementError> {
        let attempt = async {
            loop {
                match UnixStream::connect(path).await {
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::ConnectionRefused
                        ) =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    r => return r,
                }
            }
        };
        let stream = tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| ManagementError::Timeout(timeout))??;
        let (r, w) = stream.into_split();
        Ok(Management {
            reader: BufReader::new(r),
            writer: w,
            session: Session::default(),
            timeout,
        })
    }

    async fn line(&mut self, buf: &mut Vec<u8>) -> Result<(), ManagementError> {
        buf.clear();
        let mut limited = (&mut self.reader).take(MAX_LINE as u64);
        let read = limited.read_until(b'\n', buf);
        let n = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| ManagementError::Timeout(self.timeout))??;
        if n == 0 {
            return Err(ManagementError::Closed);
        }
        if n == MAX_LINE && buf.last() != Some(&b'\n') {
            return Err(ManagementError::TooLong);
        }
        Ok(())
    }

    async fn request(&mut self, request: &str) -> Result<Reply, ManagementError> {
        self.writer.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        for _ in 0..MAX_LINES {
            self.line(&mut buf).await?;
            if let Some(reply) = self.session.feed(&String::from_utf8_lossy(&buf)) {
                return match reply {
                    Reply::Error(reason) => Err(ManagementError::Refused {
                        request: request.trim().to_owned(),
                        reason,
                    }),
                    r => Ok(r),
                };
            }
        }
        Err(ManagementError::TooLong)
    }

    /// The connected clients.
    pub async fn clients(&mut self) -> Result<Vec<Client>, ManagementError> {
        let request = self.session.request_status();
        match self.request(request).await? {
            Reply::Status(rows) => Ok(rows),
            _ => Err(ManagementError::Unexpected(request.trim().into())),
        }
    }

    /// Drops the client `cid` at once (its disconnect hook runs).
    pub async fn kill(&mut self, cid: u64) -> Result<(), ManagementError> {
        let request = self.session.request_kill(cid);
        match self.request(&request).await? {
            Reply::Success(_) => Ok(()),
            _ => Err(ManagementError::Unexpected(request.trim().into())),
        }
    }
}

/// Kills the connections from `addresses` (`ip:port`, see
/// [`Connections`]) on the server behind `path`, and nobody else; how many
/// were killed.
pub async fn kill_connections(
    path: &Path,
    addresses: &[String],
    timeout: Duration,
) -> Result<usize, ManagementError> {
    let mut m = Management::connect(path, timeout).await?;
    let mut killed = 0;
    for c in m.clients().await? {
        let wanted = addresses.iter().any(|a| same_address(&c.real_address, a));
        if let (true, Some(cid)) = (wanted, c.cid) {
            m.kill(cid).await?;
            killed += 1;
        }
    }
    Ok(killed)
}

/// Whether OpenVPN's `Real Address` (`198.18.0.2:40001`, maybe prefixed
/// as in `[AF_INET]198.18.0.2:40001` or `tcp4-server:...`) is `ip:port`.
pub fn same_address(real: &str, address: &str) -> bool {
    real.strip_suffix(address)
        .is_some_and(|head| head.is_empty() || head.ends_with([']', ':']))
}

pub use re6st_node_core::connections::{Connections, MAX_CONNECTIONS};

/// The clients of each server (`(iface, socket)`), with their byte
/// counts; a server that does not answer is left out.
pub async fn traffic(
    sockets: &[(String, std::path::PathBuf)],
) -> Vec<crate::status::ServedTraffic> {
    let mut out = Vec::new();
    for (iface, path) in sockets {
        let Ok(mut m) = Management::connect(path, Duration::from_secs(2)).await else {
            continue;
        };
        for c in m.clients().await.unwrap_or_default() {
            out.push(crate::status::ServedTraffic {
                peer: c.common_name,
                iface: iface.clone(),
                bytes_received: c.bytes_received,
                bytes_sent: c.bytes_sent,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `status 3` as OpenVPN 2.6.14 prints it with two clients.
    const STATUS: &str = "TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)]\n\
TIME\t2026-12-06 01:50:00\t1796521800\n\
HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher\n\
CLIENT_LIST\t2/16\t198.18.0.2:40001\t\t\t1200\t3400\t2026-12-06 01:49:00\t1796521740\tUNDEF\t7\t0\tnone\n\
CLIENT_LIST\t3/16\t198.18.0.3:40002\t\t\t10\t20\t2026-12-06 01:49:30\t1796521770\tUNDEF\t9\t1\tnone\n\
HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)\n\
ROUTING_TABLE\t0a:0b:0c:0d:0e:0f@0\t2/16\t198.18.0.2:40001\t2026-12-06 01:50:00\t1796521800\n\
GLOBAL_STATS\tMax bcast/mcast queue length\t0\n\
GLOBAL_STATS\tdco_enabled\t0\n\
END\n";

    fn feed_all(s: &mut Session, text: &str) -> Vec<Reply> {
        text.lines().filter_map(|l| s.feed(l)).collect()
    }

    #[test]
    fn status_gives_each_client_with_its_cid_and_bytes() {
        let mut s = Session::default();
        assert!(feed_all(&mut s, ">INFO:OpenVPN Management Interface Version 5").is_empty());
        assert_eq!(s.request_status(), "status 3\n");
        let r = feed_all(&mut s, STATUS);
        let Some(Reply::Status(rows)) = r.first() else {
            panic!("{r:?}")
        };
        assert_eq!(
            rows[0],
            Client {
                common_name: "2/16".into(),
                real_address: "198.18.0.2:40001".into(),
                bytes_received: 1200,
                bytes_sent: 3400,
                cid: Some(7),
            }
        );
        assert_eq!(rows[1].cid, Some(9));
        assert_eq!(rows.len(), 2);
        assert_eq!(s.request_kill(9), "client-kill 9\n");
        assert_eq!(
            s.feed("SUCCESS: client-kill command succeeded"),
            Some(Reply::Success("client-kill command succeeded".into()))
        );
        assert_eq!(
            s.feed("ERROR: client-kill command failed"),
            Some(Reply::Error("client-kill command failed".into()))
        );
    }

    #[test]
    fn columns_follow_the_header_and_notifications_are_skipped() {
        let mut s = Session::default();
        s.request_status();
        let text = "HEADER\tCLIENT_LIST\tClient ID\tBytes Sent\tCommon Name\tBytes Received\tReal Address\n\
>CLIENT:ESTABLISHED,3\n\
CLIENT_LIST\t4\t99\tx/8\t11\t[AF_INET]198.18.0.9:1\n\
END";
        let r = feed_all(&mut s, text);
        assert_eq!(
            r,
            vec![Reply::Status(vec![Client {
                common_name: "x/8".into(),
                real_address: "[AF_INET]198.18.0.9:1".into(),
                bytes_received: 11,
                bytes_sent: 99,
                cid: Some(4),
            }])]
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let mut s = Session::default();
        s.request_status();
        for i in 0..MAX_CLIENTS + 10 {
            assert_eq!(
                s.feed(&format!(
                    "CLIENT_LIST\t{i}/16\ta\t\t\t1\t2\tx\t0\tU\t{i}\t0\tnone"
                )),
                None
            );
        }
        let Some(Reply::Status(rows)) = s.feed("END") else {
            panic!()
        };
        assert_eq!(rows.len(), MAX_CLIENTS);
    }

    #[test]
    fn connections_are_told_apart_by_address() {
        assert!(same_address("198.18.0.2:40001", "198.18.0.2:40001"));
        assert!(same_address(
            "[AF_INET]198.18.0.2:40001",
            "198.18.0.2:40001"
        ));
        assert!(!same_address("1198.18.0.2:40001", "198.18.0.2:40001"));
        assert!(!same_address("198.18.0.2:400011", "198.18.0.2:40001"));
        let mut c = Connections::default();
        c.connected("re6stnet-tcp", "198.18.0.2", 40001, 5);
        // The same node renewed, connected again from another port.
        c.connected("re6stnet-tcp", "198.18.0.2", 40002, 6);
        c.connected("re6stnet-udp", "198.18.0.3", 1194, 7);
        assert_eq!(
            c.using(&[5].into()),
            [(
                "re6stnet-tcp".to_string(),
                vec!["198.18.0.2:40001".to_string()]
            )]
            .into()
        );
        c.disconnected("re6stnet-tcp", "198.18.0.2", 40001);
        assert!(c.using(&[5].into()).is_empty());
        for i in 0..MAX_CONNECTIONS as u16 + 10 {
            c.connected("re6stnet-udp", "198.18.0.4", i, 8);
        }
        assert_eq!(c.len(), MAX_CONNECTIONS);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(lines in proptest::collection::vec(".{0,120}", 0..20), status: bool) {
            let mut s = Session::default();
            if status {
                s.request_status();
            }
            for l in &lines {
                let _ = s.feed(l);
            }
        }

        #[test]
        fn never_panics_on_tab_separated_rows(
            fields in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just("CLIENT_LIST".to_string()),
                proptest::strategy::Just("HEADER".to_string()),
                proptest::strategy::Just("Client ID".to_string()),
                proptest::strategy::Just("Common Name".to_string()),
                "[0-9]{0,25}",
                ".{0,10}",
            ], 0..16)
        ) {
            let mut s = Session::default();
            s.request_status();
            let _ = s.feed(&fields.join("\t"));
            let _ = s.feed(&format!("HEADER\t{}", fields.join("\t")));
            let _ = s.feed(&fields.join("\t"));
            let _ = s.feed("END");
        }
    }
}
