//! `re6st init`: run as init, or talk to the running init.
//!
//! ```text
//! re6st init [--root DIR [--network]] [-v]       run (PID 1, or a test root)
//! re6st init status|log|reboot|poweroff|halt [--root DIR]
//! re6st init upgrade [--manifest FILE] [--sha256 HEX] [--tries N] [--no-reboot] FILE|-
//! ```
//!
//! `RE6ST_INIT_ROOT` in the environment stands for `--root`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::control::{self, Request, Shutdown};
use crate::manifest::{self, Trust};
use crate::runtime::{self, Options};
use crate::upgrade::{self, BootInfo};

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

#[derive(Subcommand, Debug, Clone)]
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
    /// Write a root filesystem image (squashfs) into the slot we did not
    /// boot from, verify it, and reboot into it on trial: init confirms it
    /// once the router has joined the overlay, else the next boot falls
    /// back. The image's manifest must be signed by the key this image
    /// trusts and name this board and architecture; a file's length and
    /// digest are checked before anything is written.
    Upgrade {
        /// The image's signed manifest [default: FILE.manifest; required
        /// with -].
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// SHA-256 of the image (hex), if you want to pin it: must be the
        /// manifest's.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Boots the new slot gets before falling back.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
        tries: u32,
        /// Put the slot on trial but do not reboot now.
        #[arg(long)]
        no_reboot: bool,
        /// The image file, or - for standard input (e.g. from wget -O -).
        source: PathBuf,
    },
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
        Command::Upgrade {
            manifest,
            sha256,
            tries,
            no_reboot,
            source,
        } => {
            return upgrade_command(
                root,
                manifest.as_deref(),
                sha256.as_deref(),
                tries,
                no_reboot,
                &source,
            )
        }
    };
    send(root, request)
}

fn send(root: Option<PathBuf>, request: Request) -> ExitCode {
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

fn upgrade_command(
    root: Option<PathBuf>,
    manifest: Option<&std::path::Path>,
    sha256: Option<&str>,
    tries: u32,
    no_reboot: bool,
    source: &std::path::Path,
) -> ExitCode {
    let fail = |msg: String| {
        // One write: on a router's console, services log between the
        // pieces eprintln! writes.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("upgrade: {msg}\n").as_bytes(),
        );
        ExitCode::FAILURE
    };
    if let Some(sha256) = sha256 {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return fail(format!("--sha256 wants 64 hex digits, not {sha256:?}"));
        }
    }
    let stdin = source.as_os_str() == "-";
    let manifest_path = match manifest {
        Some(m) => m.to_path_buf(),
        None if stdin => {
            return fail("reading the image from standard input needs --manifest FILE".into())
        }
        None => {
            let mut p = source.as_os_str().to_owned();
            p.push(".manifest");
            PathBuf::from(p)
        }
    };
    let system = root.is_none();
    let base = root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let info = match BootInfo::load(&base) {
        Ok(Some(info)) => info,
        Ok(None) => {
            return fail(format!(
            "no A/B layout: {} is missing (this system was not booted by the firmware's initramfs)",
            base.join(upgrade::BOOT_INFO).display()
        ))
        }
        Err(e) => return fail(format!("{}: {e}", upgrade::BOOT_INFO)),
    };
    let trust = match Trust::load(&base) {
        Ok(t) => t,
        Err(e) => return fail(format!("{e}; nothing written")),
    };
    let manifest_text = match read_manifest(&manifest_path) {
        Ok(t) => t,
        Err(e) => {
            return fail(format!(
                "unsigned image: no manifest {} ({e}); nothing written",
                manifest_path.display()
            ))
        }
    };
    let mut stdin_lock = std::io::stdin().lock();
    let input = if stdin {
        upgrade::Source::Stream(&mut stdin_lock)
    } else {
        upgrade::Source::File(source)
    };
    // Tests (--root) use plain files: nothing to mount.
    let check: &dyn Fn(&std::path::Path, u64) -> Result<(), String> = if system {
        &upgrade::mount_check
    } else {
        &|_, _| Ok(())
    };
    match upgrade::upgrade_signed(&info, &trust, &manifest_text, input, sha256, tries, check) {
        Ok(up) => {
            println!(
                "upgrade: signed manifest verified (key {}, board {}, arch {})",
                trust.key_id, trust.board, trust.arch
            );
            println!(
                "upgrade: {} bytes written to slot {} ({}), sha256 {} verified; {}",
                up.bytes,
                up.slot,
                info.device(up.slot).display(),
                up.sha256,
                up.env.describe(info.booted)
            );
            if no_reboot {
                println!("upgrade: slot {} boots at the next reboot", up.slot);
                ExitCode::SUCCESS
            } else {
                println!("upgrade: rebooting into slot {}", up.slot);
                send(root, Request::Shutdown(Shutdown::Reboot))
            }
        }
        Err(e) => fail(e.to_string()),
    }
}

/// A manifest file, at most a few KiB (anything larger is refused by the
/// parser, not read whole).
fn read_manifest(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut text = Vec::new();
    std::fs::File::open(path)?
        .take(manifest::MAX_MANIFEST as u64 + 1)
        .read_to_end(&mut text)?;
    Ok(text)
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
