//! Command-line options, with upstream's names and defaults, and their
//! validation into the settings the registry runs with.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::Parser;
use thiserror::Error;

use crate::network::NetworkParams;

/// Oldest protocol a registry can require (upstream's `min_protocol`).
pub const MIN_PROTOCOL: u32 = 1;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "re6st-registry",
    about = "re6stnet registry used to bootstrap nodes and deliver certificates.",
    after_help = "Options can be read from a file given as @FILE, one option a line \
                  without its leading dashes, e.g. `ca /etc/re6stnet/ca.crt`.\n\n\
                  To start a new network: re6st-registry --init-network 2001:db8::/32 --dir DIR"
)]
pub struct Options {
    /// Port on which the server will listen.
    #[arg(long, default_value_t = 80)]
    pub port: u16,
    /// Bind server to this IPv4 (empty: no IPv4 listener).
    #[arg(short = '4', value_name = "IP", default_value = "0.0.0.0")]
    pub bind4: String,
    /// Bind server to this IPv6 (empty: no IPv6 listener).
    #[arg(short = '6', value_name = "IP", default_value = "::")]
    pub bind6: String,
    /// Path to SQLite database file, initialized if it does not exist.
    #[arg(long, default_value = "/var/lib/re6stnet/registry.db")]
    pub db: PathBuf,
    /// File containing Diffie-Hellman parameters in .pem format.
    #[arg(long)]
    pub dh: Option<PathBuf>,
    /// Certificate authority (CA) file in .pem format. Its serial number
    /// defines the prefix of the network.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// CA private key in .pem format.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// SMTP host to send tokens by e-mail, or the path of a mailbox file
    /// (absolute, or an existing file) to append them to. Unset: no
    /// registration by e-mail.
    #[arg(long)]
    pub mailhost: Option<String>,
    /// SMTP login.
    #[arg(long)]
    pub smtp_user: Option<String>,
    /// SMTP password.
    #[arg(long)]
    pub smtp_pwd: Option<String>,
    /// Use STARTTLS for SMTP connections.
    #[arg(long)]
    pub smtp_starttls: bool,
    /// Default length of allocated prefixes. If 0, registration by e-mail
    /// is disabled.
    #[arg(long, default_value_t = 16)]
    pub prefix_length: u8,
    /// Length of allocated anonymous prefixes. If 0 or unset, anonymous
    /// registration is disabled.
    #[arg(long)]
    pub anonymous_prefix_length: Option<u8>,
    /// Enable IPv4: each node is assigned a subnet of length PLEN inside
    /// network IP/N.
    #[arg(long, num_args = 2, value_names = ["IP/N", "PLEN"])]
    pub ipv4: Option<Vec<String>>,
    /// Path to logging file ('-': standard error). Under systemd the
    /// journal is used instead, unless this option is given.
    #[arg(short = 'l', long, default_value = "/var/log/re6stnet/registry.log")]
    pub logfile: String,
    /// Whether --logfile was given (rather than defaulted): under systemd
    /// the journal replaces the default file, not one asked for.
    #[arg(skip)]
    pub logfile_given: bool,
    /// Run directory of the node on this host (its --run): the registry
    /// reads that node's babeld socket there to hand out bootstrap peers.
    #[arg(short = 'r', long, default_value = "/var/run/re6stnet")]
    pub run: PathBuf,
    /// Log level. 0 disables logging. 1=WARNING, 2=INFO, 3=DEBUG, 4=TRACE.
    #[arg(short = 'v', long, default_value_t = 1)]
    pub verbose: u8,
    /// Reject nodes that are too old.
    #[arg(long, default_value_t = MIN_PROTOCOL)]
    pub min_protocol: u32,
    /// Authorized IPs to access origin-restricted RPC and /metrics
    /// (127.0.0.1 and ::1 always are).
    #[arg(long)]
    pub authorized_origin: Vec<String>,
    /// File containing community configuration. This file cannot be empty
    /// and must contain the default location ('*').
    #[arg(long)]
    pub community: Option<PathBuf>,
    /// Period in seconds during which a client can renew its certificate
    /// even if expired.
    #[arg(long, default_value_t = 8_640_000)]
    pub grace_period: i64,
    /// Hello interval in seconds (babel).
    #[arg(long, default_value_t = 15)]
    pub hello: u32,
    /// Specify that tunnels should be encrypted.
    #[arg(long)]
    pub encrypt: bool,
    /// Number of client tunnels to set up.
    #[arg(long, default_value_t = 10)]
    pub client_count: u32,
    /// Maximum number of accepted clients per OpenVPN server (default:
    /// client-count * 2).
    #[arg(long)]
    pub max_clients: Option<u32>,
    /// Interval in seconds between two tunnel refreshes.
    #[arg(long, default_value_t = 300)]
    pub tunnel_refresh: u32,
    /// Prevent tunnelling across borders of listed countries.
    #[arg(long, value_name = "CODE")]
    pub same_country: Vec<String>,
    /// Serve HTTPS with this certificate (PEM; with --tls-key).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Connections served at once from one source address (an IPv4
    /// address or an IPv6 /64); more are closed at once, so that one
    /// client cannot hold every connection. 0: no limit (behind a reverse
    /// proxy, whose connections all come from one address).
    #[arg(long, value_name = "N", default_value_t = crate::http::PER_SOURCE)]
    pub max_connections_per_source: usize,
    /// Create a new network: CA certificate (ca.crt), its key (ca.key) and
    /// DH parameters (dh.pem) in --dir, for the IPv6 prefix given, then exit.
    #[arg(long, value_name = "IPV6/LEN")]
    pub init_network: Option<String>,
    /// Directory for --init-network.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// E-mail address of the CA created by --init-network (sender of
    /// token e-mails).
    #[arg(long)]
    pub ca_email: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--{0} is required")]
    Required(&'static str),
    #[error("--min-protocol: value must be between {MIN_PROTOCOL} and {0} (included)")]
    MinProtocol(u32),
    #[error("invalid argument --ipv4")]
    Ipv4,
    #[error("--tls-cert and --tls-key go together")]
    Tls,
    #[error("--same-country requires GEOIP2_MMDB")]
    SameCountryWithoutGeoip,
}

/// The normalized `IP/N` network of `--ipv4` and the subnet length.
pub fn parse_ipv4(v: &[String]) -> Result<(String, u8), ConfigError> {
    let [net, plen] = v else {
        return Err(ConfigError::Ipv4);
    };
    let (ip, n) = net.split_once('/').ok_or(ConfigError::Ipv4)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| ConfigError::Ipv4)?;
    let n: u8 = n.trim().parse().map_err(|_| ConfigError::Ipv4)?;
    let plen: u8 = plen.trim().parse().map_err(|_| ConfigError::Ipv4)?;
    if u16::from(n) + u16::from(plen) > 32 {
        return Err(ConfigError::Ipv4);
    }
    Ok((format!("{ip}/{n}"), plen))
}

impl Options {
    /// Parses the command line, expanding `@FILE` options files first.
    pub fn parse_from_args(args: Vec<OsString>) -> Result<Options, clap::Error> {
        let cmd = <Options as clap::CommandFactory>::command();
        let longs: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_long())
            .map(|l| format!("--{l}"))
            .collect();
        let args = args.into_iter().map(|a| a.to_string_lossy().into_owned());
        let expanded = re6st_proto::options::expand(
            args,
            &|o| longs.iter().any(|l| l == o),
            &mut |f: &str| std::fs::read_to_string(f),
        )
        .map_err(|e| cmd.clone().error(clap::error::ErrorKind::Io, e))?;
        let matches = cmd.try_get_matches_from(expanded)?;
        let mut o = <Options as clap::FromArgMatches>::from_arg_matches(&matches)?;
        o.logfile_given =
            matches.value_source("logfile") == Some(clap::parser::ValueSource::CommandLine);
        Ok(o)
    }

    /// Checks the options of a running registry and derives the network
    /// parameters.
    pub fn network_params(&self, protocol: u32, geoip: bool) -> Result<NetworkParams, ConfigError> {
        if !(MIN_PROTOCOL..=protocol).contains(&self.min_protocol) {
            return Err(ConfigError::MinProtocol(protocol));
        }
        if !self.same_country.is_empty() && !geoip {
            return Err(ConfigError::SameCountryWithoutGeoip);
        }
        Ok(NetworkParams {
            ipv4: self.ipv4.as_deref().map(parse_ipv4).transpose()?,
            same_country: self.same_country.clone(),
            client_count: self.client_count,
            encrypt: self.encrypt,
            hello: self.hello,
            max_clients: self
                .max_clients
                .unwrap_or(self.client_count.saturating_mul(2)),
            min_protocol: self.min_protocol,
            tunnel_refresh: self.tunnel_refresh,
            protocol,
        })
    }

    /// `--ca`, `--key` and `--dh`, required to serve.
    pub fn pki_paths(&self) -> Result<(&PathBuf, &PathBuf, &PathBuf), ConfigError> {
        Ok((
            self.ca.as_ref().ok_or(ConfigError::Required("ca"))?,
            self.key.as_ref().ok_or(ConfigError::Required("key"))?,
            self.dh.as_ref().ok_or(ConfigError::Required("dh"))?,
        ))
    }

    pub fn tls(&self) -> Result<Option<(&PathBuf, &PathBuf)>, ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Ok(Some((c, k))),
            (None, None) => Ok(None),
            _ => Err(ConfigError::Tls),
        }
    }

    /// Authorized origins: the defaults plus `--authorized-origin`.
    pub fn authorized_origins(&self) -> Vec<String> {
        let mut v = vec!["127.0.0.1".to_owned(), "::1".to_owned()];
        v.extend(self.authorized_origin.iter().cloned());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_file() {
        let f = std::env::temp_dir().join(format!("re6st-registry-{}.conf", std::process::id()));
        std::fs::write(&f, "port 9000\n# comment\nprefix-length 20\nhello 4\n").unwrap();
        let o = parse(&[&format!("@{}", f.display()), "--ca", "ca.crt"]);
        std::fs::remove_file(&f).ok();
        assert_eq!((o.port, o.prefix_length, o.hello), (9000, 20, 4));
        let bad =
            Options::parse_from_args(vec!["re6st-registry".into(), "@/nonexistent/x.conf".into()]);
        assert!(bad.unwrap_err().to_string().contains("nonexistent"));
    }

    fn parse(args: &[&str]) -> Options {
        let mut v = vec![OsString::from("re6st-registry")];
        v.extend(args.iter().map(OsString::from));
        Options::parse_from_args(v).unwrap()
    }

    #[test]
    fn a_given_logfile_is_told_from_the_default() {
        let o = parse(&[]);
        assert_eq!(o.logfile, "/var/log/re6stnet/registry.log");
        assert!(!o.logfile_given);
        let o = parse(&["-l", "/var/log/re6stnet/registry.log"]);
        assert!(o.logfile_given);
        // From an options file too (`logfile ...` in re6st-registry.conf).
        let dir = std::env::temp_dir().join(format!("re6st-logfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("re6st-registry.conf");
        std::fs::write(&conf, "logfile /tmp/r.log\n").unwrap();
        let o = parse(&[&format!("@{}", conf.display())]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(o.logfile_given);
        assert_eq!(o.logfile, "/tmp/r.log");
    }

    #[test]
    fn upstream_names_and_defaults() {
        let o = parse(&["--ca", "ca.crt", "--key", "ca.key", "--dh", "dh.pem"]);
        assert_eq!(o.port, 80);
        assert_eq!(o.bind4, "0.0.0.0");
        assert_eq!(o.bind6, "::");
        assert_eq!(o.prefix_length, 16);
        assert_eq!(o.anonymous_prefix_length, None);
        assert_eq!(o.grace_period, 8_640_000);
        assert_eq!(o.authorized_origins(), ["127.0.0.1", "::1"]);
        let p = o.network_params(10, false).unwrap();
        assert_eq!(p.max_clients, 20);
        assert!(o.pki_paths().is_ok());

        let o = parse(&[
            "--port",
            "8080",
            "-4",
            "127.0.0.1",
            "-6",
            "",
            "--ipv4",
            "10.1.2.3/16",
            "8",
            "--authorized-origin",
            "192.0.2.1",
            "--same-country",
            "FR",
            "--same-country",
            "DE",
            "--encrypt",
            "--anonymous-prefix-length",
            "20",
            "-v",
            "3",
            "-l",
            "-",
            "--smtp-starttls",
            "--max-clients",
            "5",
        ]);
        assert_eq!(o.bind6, "");
        assert_eq!(o.authorized_origins(), ["127.0.0.1", "::1", "192.0.2.1"]);
        assert_eq!(o.same_country, ["FR", "DE"]);
        assert!(matches!(
            o.network_params(10, false),
            Err(ConfigError::SameCountryWithoutGeoip)
        ));
        let p = o.network_params(10, true).unwrap();
        assert_eq!(p.ipv4, Some(("10.1.2.3/16".into(), 8)));
        assert_eq!(p.max_clients, 5);
        assert!(p.encrypt);
        assert_eq!(o.pki_paths(), Err(ConfigError::Required("ca")));
    }

    #[test]
    fn validation() {
        assert!(parse_ipv4(&["10.0.0.0/8".into(), "24".into()]).is_ok());
        assert!(parse_ipv4(&["10.0.0.0".into(), "24".into()]).is_err());
        assert!(parse_ipv4(&["10.0.0.0/8".into(), "x".into()]).is_err());
        assert!(parse_ipv4(&["300.0.0.0/8".into(), "24".into()]).is_err());
        let o = parse(&["--min-protocol", "11"]);
        assert_eq!(
            o.network_params(10, false),
            Err(ConfigError::MinProtocol(10))
        );
        let o = parse(&["--tls-cert", "x"]);
        assert_eq!(o.tls(), Err(ConfigError::Tls));
    }
}
