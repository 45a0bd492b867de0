//! `re6st init`: run as init, or talk to the running init.
//!
//! ```text
//! re6st init [--root DIR [--network]] [-v]       run (PID 1, or a test root)
//! re6st init status|log|reboot|poweroff|halt [--root DIR]
//! ```
//!
//! `RE6ST_INIT_ROOT` in the environment stands for `--root`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::control::{self, Request, Shutdown};
use crate::runtime::{self, Options};

pub const ROOT_ENV: &str = "RE6ST_INIT_ROOT";

#[derive(Parser, Debug)]
#[command(name = "init", about = "Init of the re6st router firmware.")]
struct Args {
    /// Root directory prefix: profile, data and sockets live below it, and
    /// nothing is mounted, set or rebooted (tests, ordinary hosts).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Log debug messages too.
    #[arg(short, long)]
    verbose: bool,
    /// With --root: still configure loopback, sysctls, WAN and LAN (for a
    /// test in a network namespace of its own).
    #[arg(long)]
    network: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug, Clone, Copy)]
enum Command {
    /// Show milestones and services of the running init.
    Status,
    /// Print init's recent log (RAM ring buffer).
    Log,
    /// Stop services, unmount, reboot.
    Reboot,
    /// Stop services, unmount, power off.
    Poweroff,
    /// Stop services, unmount, halt.
    Halt,
}

fn root_from_env(root: Option<PathBuf>) -> Option<PathBuf> {
    root.or_else(|| std::env::var_os(ROOT_ENV).map(PathBuf::from))
}

fn client(root: Option<PathBuf>, command: Command) -> ExitCode {
    let request = match command {
        Command::Status => Request::Status,
        Command::Log => Request::Log,
        Command::Reboot => Request::Shutdown(Shutdown::Reboot),
        Command::Poweroff => Request::Shutdown(Shutdown::Poweroff),
        Command::Halt => Request::Shutdown(Shutdown::Halt),
    };
    let root = root.unwrap_or_else(|| PathBuf::from("/"));
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(control::send(&root, request))
                .map_err(|e| e.to_string())
        });
    match answer {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("init: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What PID 1 takes from its arguments: the kernel hands init the
/// command-line words it doesn't know, and PID 1 must never stop on a usage
/// error, so anything else is ignored.
fn lenient_options(args: &[OsString]) -> Options {
    let mut opts = Options::default();
    let mut words = args.iter().skip(1);
    while let Some(w) = words.next() {
        if w == "-v" || w == "--verbose" {
            opts.verbose = true;
        } else if w == "--network" {
            opts.network = true;
        } else if w == "--root" {
            opts.root = words.next().map(PathBuf::from);
        } else if let Some(dir) = w.to_str().and_then(|w| w.strip_prefix("--root=")) {
            opts.root = Some(PathBuf::from(dir));
        }
    }
    opts.root = root_from_env(opts.root);
    opts
}

/// Entry point, `args[0]` being the program name.
pub fn main(args: Vec<OsString>) -> ExitCode {
    if std::process::id() == 1 {
        return runtime::run(lenient_options(&args));
    }
    let parsed = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let root = root_from_env(parsed.root);
    match parsed.command {
        Some(c) => client(root, c),
        None => runtime::run(Options {
            root,
            verbose: parsed.verbose,
            network: parsed.network,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lenient(words: &[&str]) -> Options {
        let args: Vec<OsString> = words.iter().map(OsString::from).collect();
        lenient_options(&args)
    }

    #[test]
    fn pid1_arguments_are_read_leniently() {
        let o = lenient(&["init", "single", "--root", "/tmp/r", "-v", "nonsense"]);
        assert_eq!(o.root, Some(PathBuf::from("/tmp/r")));
        assert!(o.verbose);
        let o = lenient(&["init", "--root=/x"]);
        assert_eq!(o.root, Some(PathBuf::from("/x")));
        // A dangling --root is ignored rather than fatal.
        let o = lenient(&["init", "emergency", "--root"]);
        assert!(!o.verbose);
        assert_eq!(o.root, root_from_env(None));
    }
}
