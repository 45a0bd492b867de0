//! `re6st ctl status [--json] [-r RUN]` and `re6st ctl metrics [-r RUN]`:
//! asks the running node, adds the host's figures (memory, load, uptime,
//! the tunnels' interface counters) and prints.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use super::system::{iface_bytes, SystemFigures};
use super::{render, NodeStatus};

/// Name of the node's status socket in its run directory.
pub const SOCKET: &str = "ctl.sock";

#[derive(Parser, Debug)]
#[command(
    name = "re6st ctl",
    about = "Show the state of the re6st node running on this host"
)]
struct Args {
    /// Run directory of the node to ask (the node's --run).
    #[arg(short = 'r', long, default_value = "/var/run/re6stnet", global = true)]
    run: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show tunnels, routes, certificate, network configuration and peer cache.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The same figures in Prometheus' text format (tunnels by state,
    /// bytes, routes, peer cache, registry, certificate, restarts, host).
    Metrics,
}

/// The command-line definition, for the manual page.
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let a = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let path = a.run.join(SOCKET);
    let text = (|| -> std::io::Result<String> {
        let mut s = std::os::unix::net::UnixStream::connect(&path)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    })();
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("re6st ctl: {}: {e} (is the node running?)", path.display());
            return ExitCode::FAILURE;
        }
    };
    let mut s = match serde_json::from_str::<NodeStatus>(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("re6st ctl: the node answered something unexpected: {e}");
            return ExitCode::FAILURE;
        }
    };
    add_host_figures(&mut s);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match a.command {
        Cmd::Status { json: true } => match serde_json::to_string(&s) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("re6st ctl: {e}");
                return ExitCode::FAILURE;
            }
        },
        Cmd::Status { json: false } => print!("{}", render(&s, now)),
        Cmd::Metrics => print!("{}", super::metrics::render(&s, now)),
    }
    ExitCode::SUCCESS
}

/// What the node leaves to us: the host's figures, and each client
/// tunnel's bytes from its interface's kernel counters when the node gave
/// none (we run in the node's network namespace, as its owner does).
fn add_host_figures(s: &mut NodeStatus) {
    if s.system.is_none() {
        s.system = Some(SystemFigures::read());
    }
    for t in &mut s.tunnels {
        if t.rx_bytes.is_none() && t.tx_bytes.is_none() {
            if let Some((rx, tx)) = iface_bytes(&t.iface) {
                t.rx_bytes = Some(rx);
                t.tx_bytes = Some(tx);
            }
        }
    }
}
