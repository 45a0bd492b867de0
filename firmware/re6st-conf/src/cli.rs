//! Command line of `re6st-conf`, with upstream's options.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use re6st_proto::prefix::node_address;
use re6st_proto::{cert, prefix::Prefix};

use crate::request::{provision, ProvisionError, ProvisionRequest, TokenSource, KEY_FILE};

#[derive(Parser, Debug)]
#[command(
    name = "re6st-conf",
    about = "Set up the certificate and configuration of a re6st node."
)]
struct Args {
    /// Expected fingerprint of the network's CA (ALG:HEX, e.g. sha1:..., as
    /// printed by re6st-registry --init-network); a CA that does not match
    /// is refused (protection against a man in the middle).
    #[arg(long, value_name = "ALG:FINGERPRINT")]
    fingerprint: Option<String>,
    /// HTTP(S) URL of the registry.
    #[arg(long, value_name = "URL")]
    registry: String,
    /// Exit after fetching the CA: status 0 if we need to join, non-zero if
    /// this host already routes into the network (re6st running, or behind
    /// a re6st router).
    #[arg(long)]
    is_needed: bool,
    /// Only fetch the CA and exit.
    #[arg(long)]
    ca_only: bool,
    /// Directory for the key, certificates and re6stnet.conf.
    #[arg(short = 'd', long, default_value = ".")]
    dir: PathBuf,
    /// Extra subject field for the certificate (repeatable).
    #[arg(short = 'r', long = "req", num_args = 2, value_names = ["KEY", "VALUE"], action = clap::ArgAction::Append)]
    req: Vec<String>,
    /// E-mail address the registry sends a token to (then give it at the
    /// prompt or with --token).
    #[arg(long)]
    email: Option<String>,
    /// The token received by mail.
    #[arg(long)]
    token: Option<String>,
    /// Request an anonymous certificate (the registry may give a longer prefix).
    #[arg(long)]
    anonymous: bool,
    /// Country and continent codes, e.g. FR,EU, for community assignment.
    #[arg(long)]
    location: Option<String>,
}

fn prompt(question: &str) -> Option<String> {
    print!("{question}");
    std::io::stdout().flush().ok()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    let line = line.trim().to_owned();
    (!line.is_empty()).then_some(line)
}

/// Whether the host already routes the network's address through an address
/// of the network itself (upstream's `--is-needed` test).
fn already_in_network(network: &Prefix) -> bool {
    let out = std::process::Command::new("ip")
        .args(["-6", "-o", "route", "get", &network.to_ipv6().to_string()])
        .output();
    let Ok(out) = out else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "src" {
            return words
                .next()
                .and_then(|a| a.parse().ok())
                .and_then(|a| Prefix::from_ipv6(a, network.len()).ok())
                .is_some_and(|p| p == *network);
        }
    }
    false
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("re6st-conf: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode, ProvisionError> {
    let mut ask_token = || prompt("Please enter your token: ");
    let token = if args.anonymous {
        if args.token.is_some() || args.email.is_some() {
            return Err(ProvisionError::AnonymousConflict);
        }
        TokenSource::Anonymous
    } else if let Some(t) = args.token.clone() {
        TokenSource::Given(t)
    } else if args.ca_only || args.is_needed {
        TokenSource::Anonymous // not used
    } else {
        let email = match args.email.clone() {
            Some(e) => e,
            None => prompt("Please enter your email address: ").ok_or(ProvisionError::NoEmail)?,
        };
        TokenSource::Email(email, &mut ask_token)
    };
    if args.fingerprint.is_none() {
        println!("WARNING: it is strongly recommended to use --fingerprint option.");
    }
    let req = args
        .req
        .chunks(2)
        .map(|kv| (kv[0].clone(), kv.get(1).cloned().unwrap_or_default()))
        .collect();
    std::fs::create_dir_all(&args.dir).map_err(|e| ProvisionError::File(args.dir.clone(), e))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ProvisionError::File(PathBuf::from("<runtime>"), e))?;
    let request = ProvisionRequest {
        registry: args.registry.clone(),
        fingerprint: args.fingerprint.clone(),
        dir: args.dir.clone(),
        req,
        token,
        location: args.location.clone(),
        ca_only: args.ca_only || args.is_needed,
        timeout: Duration::from_secs(60),
    };
    if args.is_needed {
        let done = rt.block_on(provision(request))?;
        return Ok(if already_in_network(&done.network) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let done = rt.block_on(provision(request))?;
    if args.ca_only {
        return Ok(ExitCode::SUCCESS);
    }
    if done.key_generated {
        println!("Generated a new key.");
    } else {
        println!("Reusing existing key.");
    }
    if let Some(c) = &done.cert {
        let not_after = cert::not_after(c).unwrap_or(0);
        println!(
            "Setup complete. Certificate is valid until {} (Unix time {not_after}) and will be renewed 30 days before.\n\
             Do not forget to back up your private key ({KEY_FILE}) or you will lose your assigned subnet.",
            c.not_after()
        );
        if done.conf_written {
            println!("Sample configuration file created.");
        }
        if let Ok(p) = cert::node_prefix(c) {
            let subnet = done.network.concat(&p);
            if let (Ok(s), Ok(_)) = (subnet, node_address(&done.network, &p)) {
                println!(
                    "Your subnet: {}/{} (CN={})",
                    s.to_ipv6(),
                    s.len(),
                    p.to_subnet()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The command-line definition, for the manual page.
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}
