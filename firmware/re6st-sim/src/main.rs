//! `re6st-sim`: runs one simulation (or renders a sweep's reports).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use re6st_sim::config::{Loss, SimConfig};
use re6st_sim::run::{run, Options};

#[derive(Parser, Debug)]
#[command(
    name = "re6st-sim",
    about = "Simulates a re6st overlay of thousands of nodes, each running the node's real sans-IO core",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[arg(long, default_value_t = 1000)]
    nodes: u32,
    #[arg(long, default_value_t = 10)]
    client_count: usize,
    /// Clients per OpenVPN server (default: 2 × client count, as the registry).
    #[arg(long)]
    max_clients: Option<usize>,
    #[arg(long, default_value_t = 300)]
    tunnel_refresh: i64,
    /// Babel hello interval; timeouts are 4 hellos.
    #[arg(long, default_value_t = 15)]
    hello: i64,
    /// Simulated seconds.
    #[arg(long, default_value_t = 3600)]
    duration: i64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// random:FRACTION or targeted:FRACTION of the live nodes, killed at once.
    #[arg(long)]
    loss: Option<Loss>,
    /// When the loss happens (default: half the duration).
    #[arg(long)]
    loss_at: Option<i64>,
    /// The registry's node dies with the loss.
    #[arg(long)]
    registry_down: bool,
    /// Fraction of NATed nodes (clients only).
    #[arg(long, default_value_t = 0.2)]
    nat: f64,
    /// NATed nodes announce an (unreachable) address, as the daemon does
    /// without UPnP once peers told it where they see it from.
    #[arg(long)]
    nat_announces: bool,
    /// Nodes boot at random within this many seconds.
    #[arg(long, default_value_t = 600)]
    join_over: i64,
    /// Seconds for a tunnel to come up.
    #[arg(long, default_value_t = 5)]
    tunnel_delay: i64,
    /// Seconds between two ticks of a node (the daemon ticks every second).
    #[arg(long, default_value_t = 1)]
    tick: i64,
    #[arg(long, default_value_t = 60)]
    sample_every: i64,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Put the wall time in the JSON report.
    #[arg(long)]
    timing: bool,
    /// Skip diameter and stretch (O(N·(N+E))).
    #[arg(long)]
    no_paths: bool,
    /// Progress on stderr.
    #[arg(long)]
    progress: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Renders reports of several runs as one Markdown table and one JSON array.
    Table {
        #[arg(long)]
        md: PathBuf,
        #[arg(long)]
        json: PathBuf,
        reports: Vec<PathBuf>,
    },
    /// Checks reports against the targets (rejoin after a loss with the
    /// registry down, peer traffic, dumps below the client count); prints
    /// PASS/FAIL per expectation and fails if any failed.
    Check { reports: Vec<PathBuf> },
}

/// Every routing view is a few hundred kB of short-lived buffers per node
/// (ours and the manager's). With glibc's adaptive mmap threshold they come
/// from a heap that thousands of managers' B-trees fragment, and malloc
/// ended up taking half of a 10,000-node run: big blocks go to mmap.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Some(Cmd::Table { md, json, reports }) => re6st_sim::table::write(&md, &json, &reports),
        Some(Cmd::Check { reports }) => {
            match re6st_sim::check::check(&reports, &re6st_sim::check::TARGETS) {
                Ok((text, true)) => {
                    print!("{text}");
                    Ok(())
                }
                Ok((text, false)) => {
                    print!("{text}");
                    Err("some expectations failed (FAIL above)".to_owned())
                }
                Err(e) => Err(e),
            }
        }
        None => simulate(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("re6st-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn simulate(cli: &Cli) -> Result<(), String> {
    let mut cfg = SimConfig::new(cli.nodes);
    cfg.client_count = cli.client_count;
    cfg.max_clients = cli.max_clients.unwrap_or(2 * cli.client_count);
    cfg.tunnel_refresh = cli.tunnel_refresh;
    cfg.hello = cli.hello;
    cfg.duration = cli.duration;
    cfg.seed = cli.seed;
    cfg.loss = cli.loss;
    cfg.loss_at = cli.loss_at.unwrap_or(cli.duration / 2);
    cfg.registry_down = cli.registry_down;
    cfg.nat = cli.nat;
    cfg.nat_announces = cli.nat_announces;
    cfg.join_over = cli.join_over;
    cfg.tunnel_delay = cli.tunnel_delay;
    cfg.tick = cli.tick;
    cfg.sample_every = cli.sample_every;
    cfg.check()?;
    let report = run(
        cfg,
        Options {
            progress: cli.progress,
            timing: cli.timing,
            no_paths: cli.no_paths,
        },
    );
    print!("{}", report.summary());
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
