//! `re6stnet` options, with upstream's names and defaults, also read from
//! options files (`re6stnet @/etc/re6stnet/re6stnet.conf`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;
use re6st_proto::address::Proto;

/// An option value the node cannot use.
#[derive(Debug, thiserror::Error)]
pub enum OptionError {
    #[error("--disable-proto: invalid choice {0:?}")]
    DisableProto(String),
    #[error("--pp: invalid port {0:?}")]
    PpPort(String),
    #[error("--pp: {0}")]
    PpProto(re6st_proto::address::AddressError),
    #[error("--pp: missing protocol")]
    PpMissingProto,
    #[error("conflicting options --disable-proto {proto} and --pp {port} {proto}")]
    Conflict { port: u16, proto: Proto },
    #[error("--client {0:?}: no usable address")]
    Client(String),
}

/// Protocols upstream does not tunnel over unless asked.
pub const DEFAULT_DISABLED: [Proto; 2] = [Proto::Udp, Proto::Udp6];

#[derive(Parser, Debug, Clone)]
#[command(
    name = "re6stnet",
    about = "Resilient, scalable IPv6 overlay node.",
    after_help = "Options can be read from a file given as @FILE, one option a line \
                  without its leading dashes, e.g. `registry http://re6st.example/`: \
                  `re6stnet @/etc/re6stnet/re6stnet.conf` (re6st-conf writes one).",
    args_override_self = true
)]
pub struct Options {
    /// IP address advertised to other nodes; `upnp` or `any` for IPv4 (repeatable).
    #[arg(long = "ip")]
    pub ip: Vec<String>,
    /// Public HTTP(S) URL of the registry.
    #[arg(long)]
    pub registry: String,
    /// Directory of babeld's log (and OpenVPN's, with --ovpnlog).
    #[arg(short = 'l', long = "log", default_value = "/var/log/re6stnet")]
    pub log: PathBuf,
    /// Runtime directory (control sockets, pid files).
    #[arg(short = 'r', long = "run", default_value = "/var/run/re6stnet")]
    pub run: PathBuf,
    /// State directory (caches).
    #[arg(short = 's', long = "state", default_value = "/var/lib/re6stnet")]
    pub state: PathBuf,
    /// Log level: 0 none, 1 warning, 2 info, 3 debug, 4 trace.
    #[arg(short = 'v', long = "verbose", default_value_t = 2)]
    pub verbose: u8,
    /// Extra interface for LAN discovery (repeatable).
    #[arg(short = 'i', long = "interface")]
    pub interfaces: Vec<String>,
    /// Interface that gets our re6st address.
    #[arg(short = 'I', long = "main-interface", default_value = "lo")]
    pub main_interface: String,
    /// Shell command run after initialization.
    #[arg(long)]
    pub up: Option<String>,
    /// Command run in the background and killed at exit (repeatable).
    #[arg(long)]
    pub daemon: Vec<String>,
    /// Country code announced to other nodes.
    #[arg(long)]
    pub country: Option<String>,
    /// Extra argument for babeld (repeatable).
    #[arg(short = 'B', allow_hyphen_values = true)]
    pub babel_args: Vec<String>,
    /// Export the default route (gateway of the network).
    #[arg(long)]
    pub gateway: bool,
    /// Extra argument for every OpenVPN process (repeatable).
    #[arg(short = 'O', allow_hyphen_values = true)]
    pub openvpn_args: Vec<String>,
    /// One log file per OpenVPN process.
    #[arg(long)]
    pub ovpnlog: bool,
    /// OpenVPN server to run and announce: PORT and PROTO (udp, tcp, udp6,
    /// tcp6), most preferred first (repeatable; default: 1194 over udp and
    /// tcp, less --disable-proto).
    #[arg(long = "pp", num_args = 2, value_names = ["PORT", "PROTO"])]
    pub pp: Vec<String>,
    /// Diffie-Hellman parameters (default: from the registry).
    #[arg(long)]
    pub dh: Option<PathBuf>,
    /// The network's CA certificate (PEM, from re6st-conf).
    #[arg(long)]
    pub ca: PathBuf,
    /// This node's certificate (PEM, from re6st-conf).
    #[arg(long)]
    pub cert: PathBuf,
    /// This node's private key (PEM, from re6st-conf).
    #[arg(long)]
    pub key: PathBuf,
    /// Client tunnels to keep (default: from the registry).
    #[arg(long)]
    pub client_count: Option<usize>,
    /// Clients accepted per OpenVPN server (default: from the registry).
    #[arg(long)]
    pub max_clients: Option<u32>,
    /// Route tunnels through these gateways, in turn (repeatable).
    #[arg(long = "remote-gateway")]
    pub remote_gateways: Vec<String>,
    /// Never tunnel over these protocols: none, udp, tcp, udp6, tcp6 (repeatable).
    #[arg(long = "disable-proto")]
    pub disable_proto: Vec<String>,
    /// Client-only mode: one tunnel to these addresses (`ip,port,proto;...`).
    #[arg(long)]
    pub client: Option<String>,
    /// Peers to keep a direct tunnel to, by CN (repeatable).
    #[arg(long = "neighbour", value_parser = neighbour_cn)]
    pub neighbours: Vec<String>,
}

/// A `--neighbour` is a CN (`prefix/length`, as in certificates): a value
/// that is not one is refused here rather than silently never connected.
fn neighbour_cn(v: &str) -> Result<String, String> {
    re6st_proto::prefix::Prefix::from_subnet(v)
        .map(|_| v.to_owned())
        .map_err(|e| format!("{e} (a node's CN, e.g. 5/16, as `re6st ctl status` shows its peers)"))
}

impl Options {
    /// Parses a command line, expanding `@FILE` options files first.
    pub fn parse(args: Vec<OsString>) -> Result<Options, clap::Error> {
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
        let o = Options::try_parse_from(expanded)?;
        o.servers().map_err(|e| {
            cmd.clone()
                .error(clap::error::ErrorKind::ValueValidation, e)
        })?;
        Ok(o)
    }

    /// Protocols never used for tunnels.
    pub fn disabled(&self) -> Result<Vec<Proto>, OptionError> {
        if self.disable_proto.iter().any(|p| p == "none") {
            return Ok(Vec::new());
        }
        if self.disable_proto.is_empty() {
            return Ok(DEFAULT_DISABLED.to_vec());
        }
        self.disable_proto
            .iter()
            .map(|p| match p.parse::<Proto>() {
                Ok(p @ (Proto::Udp | Proto::Tcp | Proto::Udp6 | Proto::Tcp6)) => Ok(p),
                _ => Err(OptionError::DisableProto(p.clone())),
            })
            .collect()
    }

    /// The OpenVPN servers to run, in preference order: `--pp`, or 1194
    /// over udp and tcp minus the disabled protocols.
    pub fn servers(&self) -> Result<Vec<(u16, Proto)>, OptionError> {
        let disabled = self.disabled()?;
        if self.pp.is_empty() {
            return Ok([(1194, Proto::Udp), (1194, Proto::Tcp)]
                .into_iter()
                .filter(|(_, p)| !disabled.contains(p))
                .collect());
        }
        self.pp
            .chunks(2)
            .map(|c| {
                let port: u16 = c[0]
                    .parse()
                    .map_err(|_| OptionError::PpPort(c[0].clone()))?;
                let proto: Proto = c
                    .get(1)
                    .map(|p| p.parse())
                    .transpose()
                    .map_err(OptionError::PpProto)?
                    .ok_or(OptionError::PpMissingProto)?;
                if disabled.contains(&proto) {
                    return Err(OptionError::Conflict { port, proto });
                }
                Ok((port, proto))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        let mut v = vec![OsString::from("re6stnet")];
        v.extend(args.iter().map(OsString::from));
        Options::parse(v)
    }

    const BASE: [&str; 8] = [
        "--registry",
        "http://r/",
        "--ca",
        "ca.crt",
        "--cert",
        "c.crt",
        "--key",
        "c.key",
    ];

    #[test]
    fn upstream_defaults_and_servers() {
        let o = parse(&BASE).unwrap();
        assert_eq!(
            o.servers().unwrap(),
            vec![(1194, Proto::Tcp)],
            "udp is disabled by default"
        );
        assert_eq!((o.main_interface.as_str(), o.verbose), ("lo", 2));
        let o = parse(
            &[
                &BASE[..],
                &[
                    "--disable-proto",
                    "none",
                    "--pp",
                    "1195",
                    "udp",
                    "--pp",
                    "1196",
                    "tcp6",
                ],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(
            o.servers().unwrap(),
            vec![(1195, Proto::Udp), (1196, Proto::Tcp6)]
        );
        assert!(
            parse(&[&BASE[..], &["--pp", "1194", "udp"]].concat()).is_err(),
            "udp disabled by default"
        );
        assert!(parse(&[&BASE[..], &["--pp", "x", "tcp"]].concat()).is_err());
        assert!(parse(&["--ca", "x"]).is_err(), "--registry is required");
        let bad = parse(&[&BASE[..], &["--neighbour", "node4"]].concat()).unwrap_err();
        assert!(bad.to_string().contains("node4"), "{bad}");
        assert!(parse(&[&BASE[..], &["--neighbour", "5/16"]].concat()).is_ok());
    }

    #[test]
    fn upstream_conf_file() {
        let dir = std::env::temp_dir().join(format!("re6stnet-opts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("re6stnet.conf");
        // What upstream's re6st-conf writes, plus common additions.
        std::fs::write(&f, "registry http://r/\nca ca.crt\ncert cert.crt\nkey cert.key\ncountry FR\n# increase re6stnet verbosity:\nverbose 3\nO--verb\nO3\ninterface eth1\nneighbour 5/16\n").unwrap();
        let o = parse(&[&format!("@{}", f.display())]).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(o.openvpn_args, ["--verb", "3"]);
        assert_eq!((o.verbose, o.country.as_deref()), (3, Some("FR")));
        assert_eq!(
            (o.interfaces.as_slice(), o.neighbours.as_slice()),
            (&["eth1".to_string()][..], &["5/16".to_string()][..])
        );
    }
}
