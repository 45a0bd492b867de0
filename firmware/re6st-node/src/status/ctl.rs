//! `re6st ctl status [--json] [-r RUN]` and `re6st ctl metrics [-r RUN]`:
//! asks the running node, adds the host's figures (memory, load, uptime,
//! the tunnels' interface counters) and prints;
//! `re6st ctl topology --registry URL`: the network's map from its registry.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use super::system::{iface_bytes, SystemFigures};
use super::{render, NodeStatus};

/// Name of the node's status socket in its run directory.
pub const SOCKET: &str = "ctl.sock";

#[derive(Parser, Debug)]
#[command(
    name = "re6st ctl",
    about = "Show the state of the re6st node running on this host, or the network's map"
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
    /// Draw the network from its registry: every node with its version,
    /// the tunnels between them (client -> server), the registry's node
    /// marked. Uses the registry's private topology and versions RPCs:
    /// run it from one of the registry's authorized origins.
    Topology {
        /// The registry's URL (as given to re6st-conf).
        #[arg(long, value_name = "URL")]
        registry: String,
        /// Output format; by default each --output file's extension
        /// (.dot/.gv, .svg, .json), DOT on standard output. SVG needs
        /// Graphviz's dot.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Write the map to FILE (repeat for several formats from one
        /// reading) rather than standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Dot,
    Svg,
    Json,
}

impl Format {
    #[cfg(feature = "topology")]
    fn of(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "dot" | "gv" => Some(Format::Dot),
            "svg" => Some(Format::Svg),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
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
    if let Cmd::Topology {
        registry,
        format,
        output,
    } = &a.command
    {
        return draw(registry, *format, output);
    }
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
        Cmd::Topology { .. } => unreachable!("answered above"),
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

/// Router images are built without the map (feature `topology`); the
/// command stays listed so that it fails with an explanation.
#[cfg(not(feature = "topology"))]
fn draw(_registry: &str, _format: Option<Format>, _output: &[PathBuf]) -> ExitCode {
    eprintln!(
        "re6st ctl topology: this build has no network map; it was built without \
         the `registry` feature (router images run nodes only). Run it from a full \
         build, on the registry's host."
    );
    ExitCode::FAILURE
}

/// `re6st ctl topology`: fetches the map once, writes it in each format.
#[cfg(feature = "topology")]
fn draw(registry: &str, format: Option<Format>, output: &[PathBuf]) -> ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("re6st ctl topology: {e}");
        ExitCode::FAILURE
    };
    // Each output's format, checked before asking the registry.
    let mut targets = Vec::new();
    for path in output {
        match format.or_else(|| Format::of(path)) {
            Some(f) => targets.push((f, Some(path))),
            None => {
                return fail(&format_args!(
                    "{}: cannot tell the format from the name: use .dot, .svg or \
                     .json, or --format",
                    path.display()
                ))
            }
        }
    }
    if targets.is_empty() {
        targets.push((format.unwrap_or(Format::Dot), None));
    }
    let url = match re6st_registry_client::transport::RegistryUrl::parse(registry) {
        Ok(u) => u,
        Err(e) => return fail(&e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let map = match rt.block_on(super::topology::fetch(&url)) {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    for (format, path) in targets {
        let bytes = match format {
            Format::Dot => Ok(map.to_dot().into_bytes()),
            Format::Json => Ok(map.to_json().into_bytes()),
            Format::Svg => super::topology::svg(&map.to_dot()),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => return fail(&e),
        };
        match path {
            None => {
                use std::io::Write;
                if let Err(e) = std::io::stdout().write_all(&bytes) {
                    return fail(&e);
                }
            }
            Some(path) => {
                if let Err(e) = write_atomically(path, &bytes) {
                    return fail(&format_args!("{}: {e}", path.display()));
                }
                eprintln!("re6st ctl topology: wrote {}", path.display());
            }
        }
    }
    eprintln!("re6st ctl topology: {}", map.summary());
    ExitCode::SUCCESS
}

/// Writes a temporary file beside `path` and renames it: a reader never
/// sees half a drawing.
#[cfg(feature = "topology")]
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
