//! Writes the manual pages of the installed commands, generated from their
//! real command-line definitions (`make deb` runs it):
//! `cargo run -p re6st --example manpages -- OUTDIR`.
//! Sections and names follow upstream's pages: re6stnet(8), re6st-conf(1),
//! re6st-registry(1); re6st-ctl(1) is ours.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap_mangen::roff::{bold, italic, roman, Roff};

struct Page {
    command: clap::Command,
    section: &'static str,
    description: &'static str,
    files: &'static [(&'static str, &'static str)],
}

const SEE_ALSO: &[(&str, &str)] = &[
    ("re6st", "1"),
    ("re6stnet", "8"),
    ("re6st-conf", "1"),
    ("re6st-registry", "1"),
    ("re6st-ctl", "1"),
    ("babeld", "8"),
    ("openvpn", "8"),
];

/// The multi-call binary itself: its commands, by the names it answers to.
fn multicall() -> clap::Command {
    clap::Command::new("re6st")
        .about("One binary for every re6st command")
        .disable_help_flag(true)
        .subcommand(clap::Command::new("node").about("The node: re6stnet(8)"))
        .subcommand(clap::Command::new("conf").about("A node's certificate: re6st-conf(1)"))
        .subcommand(
            clap::Command::new("registry").about("The network's registry: re6st-registry(1)"),
        )
        .subcommand(
            clap::Command::new("ctl")
                .about("The running node's state, the network's map: re6st-ctl(1)"),
        )
}

fn pages() -> Vec<Page> {
    vec![
        Page {
            command: multicall(),
            section: "1",
            description: "re6st builds a resilient, scalable IPv6 overlay network. \
                This one binary runs every re6st command: `re6st COMMAND ARGS...`, \
                or run under a command's upstream name (a link named re6stnet, \
                re6st-conf, re6st-registry or re6st-ctl) it is that command. Its \
                other commands serve the router firmware (init, lan) and OpenVPN \
                (ovpn-hook, run by the node).",
            files: &[],
        },
        Page {
            command: <re6st_node::daemon::options::Options as clap::CommandFactory>::command(),
            section: "8",
            description: "The re6st node: it joins the overlay with the certificate \
                from re6st-conf, runs babeld and OpenVPN servers and clients, and \
                keeps tunnels to other nodes so that every node reaches every \
                other one. Options can be given in a file as @FILE, one option a \
                line without its leading dashes; the Debian package's \
                re6stnet.service runs `re6stnet @re6stnet.conf` in /etc/re6stnet. \
                Under systemd it logs to the journal (journalctl -u re6stnet); \
                babeld's log is in the --log directory.",
            files: &[
                (
                    "/etc/re6stnet/re6stnet.conf",
                    "options of the node (written by re6st-conf)",
                ),
                (
                    "/etc/re6stnet/ca.crt, cert.crt, cert.key",
                    "the network's CA, the node's certificate and key",
                ),
                (
                    "/var/lib/re6stnet",
                    "state: peer cache, network configuration, DH parameters",
                ),
                ("/var/log/re6stnet", "babeld's and OpenVPN's logs"),
                ("/run/re6stnet", "control sockets (babeld, re6st-ctl)"),
            ],
        },
        Page {
            command: re6st_conf::cli::command(),
            section: "1",
            description: "Fetches the network's CA from a registry, creates a key, \
                requests a certificate (with a token mailed by the registry, or \
                anonymously) and writes ca.crt, cert.key, cert.crt and a sample \
                re6stnet.conf to --dir (/etc/re6stnet for the Debian package's \
                re6stnet.service). Run again in the same directory, it keeps the \
                key and asks for a new certificate; the running node renews its \
                certificate by itself before it ends.",
            files: &[
                (
                    "DIR/ca.crt, cert.crt, cert.key",
                    "the network's CA, the node's certificate and key",
                ),
                (
                    "DIR/re6stnet.conf",
                    "options of re6stnet, written when missing",
                ),
            ],
        },
        Page {
            command: <re6st_registry::config::Options as clap::CommandFactory>::command(),
            section: "1",
            description: "The registry of a re6st network: the certificate \
                authority that hands out prefixes and certificates to nodes, and \
                the bootstrap service that tells new nodes which peers to \
                connect to (peers learned from the babeld of a node on the same \
                host, see --run). Options can be given in a file as @FILE; the \
                Debian package's re6st-registry.service runs `re6st-registry \
                @re6st-registry.conf` in /etc/re6stnet. Under systemd it logs to \
                the journal (journalctl -u re6st-registry) unless --logfile is given.",
            files: &[
                (
                    "/etc/re6stnet/re6st-registry.conf",
                    "options of the registry",
                ),
                (
                    "/etc/re6stnet/ca.crt, ca.key",
                    "the network's CA and its key",
                ),
                (
                    "/var/lib/re6stnet/registry.db",
                    "the database (prefixes, certificates, tokens)",
                ),
            ],
        },
        Page {
            command: re6st_node::status::ctl::command().name("re6st-ctl"),
            section: "1",
            description: "status asks the re6st node running on this host for its \
                state through the control socket in its run directory: tunnels, \
                routes, certificate, network configuration and peer cache, with the \
                host's memory, load and uptime; metrics prints the same figures in \
                Prometheus' text format. topology draws the whole network from its \
                registry (Graphviz DOT, SVG through Graphviz's dot, or JSON): every \
                node with its version, the tunnels between them, the registry's node \
                marked; it uses the registry's private topology and versions requests \
                (upstream's registry too), which the registry answers only to its \
                authorized origins (re6st-registry --authorized-origin).",
            files: &[("/run/re6stnet/ctl.sock", "the node's control socket")],
        },
    ]
}

fn render(page: &Page) -> std::io::Result<Vec<u8>> {
    let name = page.command.get_name().to_owned();
    let man = clap_mangen::Man::new(page.command.clone())
        .section(page.section)
        .source(format!("re6st {}", env!("CARGO_PKG_VERSION")))
        .manual("re6st manual");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    let mut roff = Roff::new();
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(page.description)]);
    roff.to_writer(&mut out)?;
    if page.command.get_arguments().next().is_some() {
        man.render_options_section(&mut out)?;
    }
    let mut roff = Roff::new();
    // Subcommands described here rather than in pages of their own.
    let subs: Vec<_> = page
        .command
        .get_subcommands()
        .filter(|c| c.get_name() != "help")
        .collect();
    if !subs.is_empty() {
        roff.control("SH", ["COMMANDS"]);
        for sub in subs {
            let mut usage = sub.get_name().to_owned();
            for a in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(l) = a.get_long().filter(|l| *l != "help") {
                    usage.push_str(&format!(" [--{l}]"));
                }
            }
            roff.control("TP", []);
            roff.text([bold(usage)]);
            roff.text([roman(
                sub.get_about().map(|a| a.to_string()).unwrap_or_default(),
            )]);
            for a in sub.get_arguments().filter(|a| a.get_long() != Some("help")) {
                if let (Some(l), Some(h)) = (a.get_long(), a.get_help()) {
                    roff.control("RS", []);
                    roff.text([bold(format!("--{l}")), roman(format!(": {h}"))]);
                    roff.control("RE", []);
                }
            }
        }
    }
    if let Some(notes) = page.command.get_after_help() {
        roff.control("SH", ["NOTES"]);
        for para in notes.to_string().split("\n\n") {
            roff.control("PP", []);
            roff.text([roman(para.to_owned())]);
        }
    }
    if !page.files.is_empty() {
        roff.control("SH", ["FILES"]);
    }
    for (path, what) in page.files {
        roff.control("TP", []);
        roff.text([italic(*path)]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let others: Vec<_> = SEE_ALSO.iter().filter(|(n, _)| *n != name).collect();
    for (i, (n, s)) in others.iter().enumerate() {
        let sep = if i + 1 < others.len() { "), " } else { ")" };
        roff.text([bold(*n), roman(format!("({s}{sep}"))]);
    }
    roff.to_writer(&mut out)?;
    Ok(out)
}

fn main() -> std::io::Result<()> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map(Into::into)
        .unwrap_or_else(|| Path::new("target/man").into());
    std::fs::create_dir_all(&dir)?;
    for page in pages() {
        let file = dir.join(format!("{}.{}", page.command.get_name(), page.section));
        std::fs::File::create(&file)?.write_all(&render(&page)?)?;
        println!("{}", file.display());
    }
    Ok(())
}
