//! One binary for every re6st command, chosen by the name it is run as
//! (a symlink `re6st-registry -> re6st`) or by its first argument
//! (`re6st registry ...`). One binary keeps flash use low on routers.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

type Entry = fn(Vec<OsString>) -> ExitCode;

/// (argv[0] name, subcommand name, entry point)
const COMMANDS: &[(&str, &str, Entry)] = &[
    ("re6stnet", "node", re6st_node::daemon::run::main),
    ("re6st-conf", "conf", re6st_conf::main),
    ("re6st-registry", "registry", registry),
    ("re6st-ovpn-hook", "ovpn-hook", ovpn_hook),
    ("init", "init", re6st_init::main),
    ("re6st-lan", "lan", re6st_node::lan::advertiser::main),
    ("re6st-ctl", "ctl", re6st_node::status::ctl::main),
];

#[cfg(feature = "registry")]
fn registry(args: Vec<OsString>) -> ExitCode {
    re6st_registry::main(args)
}

/// Router images are built without the `registry` feature (no SQLite, no
/// HTTP server: see cross/README.md); the command stays listed so that it
/// fails with an explanation rather than the usage.
#[cfg(not(feature = "registry"))]
fn registry(_args: Vec<OsString>) -> ExitCode {
    eprintln!(
        "re6st registry: this build has no registry; it was built without the \
         `registry` feature (router images run nodes only). Run the registry \
         from a full build (cargo build -p re6st, or CROSS_FEATURES=registry \
         cross/build.sh TARGET)."
    );
    ExitCode::FAILURE
}

/// OpenVPN's hook (`--up`, `--route-up`, `--client-connect`, ...).
fn ovpn_hook(args: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = args
        .into_iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match re6st_node::openvpn::hook::run(&args, &|k| std::env::var(k).ok()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("re6st ovpn-hook: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: re6st COMMAND [ARGS...]\n\ncommands:");
    for (name, sub, _) in COMMANDS {
        eprintln!("  {sub:<10} (also runs as {name})");
    }
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some((_, _, entry)) = COMMANDS.iter().find(|(name, _, _)| *name == argv0) {
        return entry(args);
    }
    // `re6st SUBCOMMAND ...`: the subcommand becomes argv[0].
    if args.len() < 2 {
        return usage();
    }
    let sub = args[1].to_string_lossy().into_owned();
    match COMMANDS
        .iter()
        .find(|(name, s, _)| *s == sub || *name == sub)
    {
        Some((name, _, entry)) => {
            args.remove(0);
            args[0] = OsString::from(*name);
            entry(args)
        }
        None => usage(),
    }
}
