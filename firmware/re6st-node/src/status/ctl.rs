//! `re6st ctl status [--json] [-r RUN]`: asks the running node.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

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
    let Cmd::Status { json } = a.command;
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
    if json {
        println!("{}", text.trim_end());
        return ExitCode::SUCCESS;
    }
    match serde_json::from_str::<NodeStatus>(&text) {
        Ok(s) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            print!("{}", render(&s, now));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("re6st ctl: the node answered something unexpected: {e}");
            ExitCode::FAILURE
        }
    }
}
