//! The provisioning profile: what a router needs to know to join a re6st
//! network and to bring up its network, in a typed form.
//!
//! Every source uses the same keys. A profile file holds one `key=value`
//! per line (spaces around `=` allowed, `#` starts a comment line); on the
//! kernel command line each key takes a `re6st.` prefix and values with
//! spaces are double-quoted (`re6st.service.shell="/bin/sh -l"`).
//!
//! | key | value |
//! |---|---|
//! | `registry` | `http://` or `https://` URL of the registry |
//! | `fingerprint` | `ALG:HEX` digest of the CA certificate (required with `registry`) |
//! | `token` | registration token; absent: anonymous certificate |
//! | `location` | `CC,CONTINENT` for community assignment, e.g. `FR,EU` |
//! | `hostname` | host name (default `re6st`) |
//! | `wan` | WAN interface name |
//! | `wan.mode` | `dhcp` (default) or `static` |
//! | `wan.address` | static addresses, `ADDR/LEN[,ADDR/LEN...]` |
//! | `wan.gateway` | static default gateway |
//! | `wan.dns` | static name servers, comma-separated |
//! | `lan` | LAN interface name: the node's re6st address goes there and its /64 is advertised |
//! | `lan.dns` | IPv6 DNS servers advertised on the LAN (RDNSS), comma-separated, up to 3 |
//! | `node.args` | more options for the re6st node, e.g. `--ip 198.51.100.7` or `--country FR` |
//! | `data` | block device of the data partition |
//! | `config` | config partition (block device) or file holding a profile |
//! | `ntp` | NTP servers, comma-separated (optional) |
//! | `modules` | kernel modules to load, comma-separated |
//! | `service.NAME` | command line of a supervised service (empty: disabled); `service.console` gets the console as standard input |
//! | `service.NAME.after` | milestones (`network`, `clock`, `provisioned`) or services it starts after |
//!
//! Sources are layered: an earlier source overrides a later one key by key
//! (kernel command line, then QEMU fw_cfg, then the config partition, then
//! the board defaults baked into the image). Parsing and validation are
//! pure, so the parser can be fuzzed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use thiserror::Error;

/// Where a layer of the profile comes from, highest priority first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    KernelCmdline,
    FwCfg,
    ConfigPartition,
    BoardDefaults,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::KernelCmdline => "kernel command line",
            Source::FwCfg => "QEMU fw_cfg profile",
            Source::ConfigPartition => "config partition profile",
            Source::BoardDefaults => "board defaults",
        })
    }
}

/// Where an offending key was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub source: Source,
    /// 1-based line (file sources) or word (kernel command line) number.
    pub position: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.source {
            Source::KernelCmdline => "word",
            _ => "line",
        };
        write!(f, "{} {unit} {}", self.source, self.position)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProfileError {
    #[error("{0}: expected key=value")]
    Syntax(Origin),
    #[error("{0}: unterminated double quote")]
    Unterminated(Source),
    #[error("{0}: unknown key {1:?}")]
    UnknownKey(Origin, String),
    #[error("{0}: {1:?} given twice in the same source")]
    Duplicate(Origin, String),
    #[error("{0}: invalid {1}: {2}")]
    Invalid(Origin, String, String),
    #[error("{0} is required when {1} is set")]
    Missing(&'static str, &'static str),
}

/// One source, parsed but not validated: its keys in order of appearance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub source: Source,
    entries: BTreeMap<String, (String, usize)>,
}

impl Layer {
    pub fn empty(source: Source) -> Self {
        Layer {
            source,
            entries: BTreeMap::new(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|(v, _)| v.as_str())
    }

    fn insert(&mut self, key: &str, value: String, position: usize) -> Result<(), ProfileError> {
        let origin = Origin {
            source: self.source,
            position,
        };
        if !is_known_key(key) {
            return Err(ProfileError::UnknownKey(origin, key.to_owned()));
        }
        if self.entries.contains_key(key) {
            return Err(ProfileError::Duplicate(origin, key.to_owned()));
        }
        self.entries.insert(key.to_owned(), (value, position));
        Ok(())
    }
}

const SIMPLE_KEYS: &[&str] = &[
    "registry",
    "fingerprint",
    "token",
    "location",
    "hostname",
    "wan",
    "wan.mode",
    "wan.address",
    "wan.gateway",
    "wan.dns",
    "lan",
    "lan.dns",
    "node.args",
    "data",
    "config",
    "ntp",
    "modules",
    "upgrade.deadline",
];

fn is_service_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `service.NAME` or `service.NAME.after` → `(NAME, is_after)`.
fn service_key(key: &str) -> Option<(&str, bool)> {
    let rest = key.strip_prefix("service.")?;
    match rest.strip_suffix(".after") {
        Some(name) if is_service_name(name) => Some((name, true)),
        _ if is_service_name(rest) => Some((rest, false)),
        _ => None,
    }
}

fn is_known_key(key: &str) -> bool {
    SIMPLE_KEYS.contains(&key) || service_key(key).is_some()
}

/// Parses a profile file (fw_cfg blob, config partition, board defaults).
pub fn parse_file(source: Source, text: &str) -> Result<Layer, ProfileError> {
    let mut layer = Layer::empty(source);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let position = n + 1;
        let (key, value) = line
            .split_once('=')
            .ok_or(ProfileError::Syntax(Origin { source, position }))?;
        layer.insert(key.trim(), value.trim().to_owned(), position)?;
    }
    Ok(layer)
}

/// Splits on ASCII whitespace outside double quotes and removes the quotes,
/// as the kernel does for its command line.
pub fn split_words(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_ascii_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return None;
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// Parses the `re6st.*` parameters of a kernel command line; other
/// parameters belong to the kernel or to other programs and are ignored.
pub fn parse_cmdline(text: &str) -> Result<Layer, ProfileError> {
    let source = Source::KernelCmdline;
    let words = split_words(text).ok_or(ProfileError::Unterminated(source))?;
    let mut layer = Layer::empty(source);
    for (n, word) in words.iter().enumerate() {
        let Some(param) = word.strip_prefix("re6st.") else {
            continue;
        };
        let position = n + 1;
        let (key, value) = param
            .split_once('=')
            .ok_or(ProfileError::Syntax(Origin { source, position }))?;
        layer.insert(key, value.to_owned(), position)?;
    }
    Ok(layer)
}

/// An `ALG:HEX` certificate digest, checked for a known algorithm and the
/// right length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Lower-case OpenSSL digest name.
    pub algorithm: String,
    pub digest: Vec<u8>,
}

impl Fingerprint {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (alg, hex_digest) = text.split_once(':').ok_or("expected ALG:HEX")?;
        let algorithm = alg.to_ascii_lowercase();
        let size = match algorithm.as_str() {
            "sha1" => 20,
            "sha224" => 28,
            "sha256" => 32,
            "sha384" => 48,
            "sha512" => 64,
            _ => return Err(format!("unsupported digest algorithm {alg:?}")),
        };
        let digest = hex::decode(hex_digest).map_err(|e| format!("bad hex digest: {e}"))?;
        if digest.len() != size {
            return Err(format!(
                "{algorithm} digests are {size} bytes, not {}",
                digest.len()
            ));
        }
        Ok(Fingerprint { algorithm, digest })
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, hex::encode(&self.digest))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Anonymous,
    Token(String),
}

/// Everything needed to ask the registry for a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioning {
    pub registry: String,
    pub fingerprint: Fingerprint,
    pub credential: Credential,
    pub location: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl fmt::Display for StaticAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WanMode {
    Dhcp,
    Static {
        addresses: Vec<StaticAddress>,
        gateway: Option<IpAddr>,
        dns: Vec<IpAddr>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wan {
    pub interface: String,
    pub mode: WanMode,
}

/// A supervised command. `after` names milestones or other services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub argv: Vec<String>,
    pub after: Vec<String>,
}

pub const DEFAULT_HOSTNAME: &str = "re6st";

/// The validated profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub provisioning: Option<Provisioning>,
    pub hostname: String,
    pub wan: Option<Wan>,
    pub lan: Option<String>,
    /// RDNSS servers advertised on the LAN.
    pub lan_dns: Vec<std::net::Ipv6Addr>,
    /// Extra options of the re6st node.
    pub node_args: Vec<String>,
    pub data_device: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub ntp: Vec<String>,
    pub modules: Vec<String>,
    /// In name order, so that a profile always starts services alike.
    pub services: Vec<ServiceSpec>,
    /// Services an empty command disables (built-in ones included).
    pub disabled_services: Vec<String>,
    /// How long a slot on trial has to join the overlay (`upgrade.deadline`,
    /// seconds) before init reboots to fall back; `None`: the default.
    pub trial_deadline: Option<std::time::Duration>,
}

impl Default for Profile {
    /// What a router runs with when no source gives a usable profile.
    fn default() -> Self {
        Profile {
            provisioning: None,
            hostname: DEFAULT_HOSTNAME.to_owned(),
            wan: None,
            lan: None,
            lan_dns: Vec::new(),
            node_args: Vec::new(),
            data_device: None,
            config: None,
            ntp: Vec::new(),
            modules: Vec::new(),
            services: Vec::new(),
            disabled_services: Vec::new(),
            trial_deadline: None,
        }
    }
}

/// Keys of all layers, the earliest layer winning, each with its origin.
struct Merged<'a> {
    entries: BTreeMap<&'a str, (&'a str, Origin)>,
}

impl<'a> Merged<'a> {
    fn new(layers: &'a [Layer]) -> Self {
        let mut sorted: Vec<&Layer> = layers.iter().collect();
        sorted.sort_by_key(|l| l.source);
        let mut entries = BTreeMap::new();
        for layer in sorted {
            for (k, (v, position)) in &layer.entries {
                let origin = Origin {
                    source: layer.source,
                    position: *position,
                };
                entries.entry(k.as_str()).or_insert((v.as_str(), origin));
            }
        }
        Merged { entries }
    }

    fn get(&self, key: &str) -> Option<(&'a str, &Origin)> {
        self.entries.get(key).map(|(v, o)| (*v, o))
    }

    /// Parses the value of `key` if present.
    fn parse<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ProfileError> {
        match self.get(key) {
            None => Ok(None),
            Some((value, origin)) => parse(value)
                .map(Some)
                .map_err(|why| ProfileError::Invalid(origin.clone(), key.to_owned(), why)),
        }
    }
}

fn parse_registry(url: &str) -> Result<String, String> {
    re6st_registry_client::transport::RegistryUrl::parse(url).map_err(|e| e.to_string())?;
    Ok(url.to_owned())
}

fn parse_token(token: &str) -> Result<Credential, String> {
    if token.is_empty() {
        return Ok(Credential::Anonymous);
    }
    if token.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    Ok(Credential::Token(token.to_owned()))
}

fn parse_location(location: &str) -> Result<String, String> {
    let ok = |part: &str| {
        (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    match location.split_once(',') {
        Some((country, continent)) if ok(country) && ok(continent) => Ok(location.to_owned()),
        _ => Err("expected COUNTRY,CONTINENT, e.g. FR,EU".into()),
    }
}

/// RFC 1123 host name, within the kernel's 64-byte limit.
pub fn parse_hostname(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    for label in name.split('.') {
        let valid = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!("invalid label {label:?}"));
        }
    }
    Ok(name.to_owned())
}

/// A Linux interface name (IFNAMSIZ - 1 bytes, no '/', ':' or spaces).
pub fn parse_interface(name: &str) -> Result<String, String> {
    let valid = (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if valid {
        Ok(name.to_owned())
    } else {
        Err("expected an interface name of 1 to 15 characters".into())
    }
}

fn parse_list<T>(text: &str, item: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(item)
        .collect()
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an IP address"))
}

fn parse_static_address(text: &str) -> Result<StaticAddress, String> {
    let (addr, len) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: expected ADDRESS/LENGTH"))?;
    let address = parse_ip(addr)?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = len
        .parse::<u8>()
        .ok()
        .filter(|l| *l <= max)
        .ok_or_else(|| format!("{text:?}: prefix length must be 0 to {max}"))?;
    Ok(StaticAddress {
        address,
        prefix_len,
    })
}

fn parse_host(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not a host name or address"))
    }
}

fn parse_module(text: &str) -> Result<String, String> {
    let ok = (1..=55).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not a module name"))
    }
}

fn parse_path(text: &str) -> Result<PathBuf, String> {
    if text.starts_with('/') && !text.contains('\0') {
        Ok(PathBuf::from(text))
    } else {
        Err("expected an absolute path".into())
    }
}

fn parse_wan(m: &Merged) -> Result<Option<Wan>, ProfileError> {
    let Some(interface) = m.parse("wan", parse_interface)? else {
        return Ok(None);
    };
    let is_static = m
        .parse("wan.mode", |mode| match mode {
            "dhcp" => Ok(false),
            "static" => Ok(true),
            _ => Err("expected dhcp or static".into()),
        })?
        .unwrap_or(false);
    let mode = if is_static {
        let addresses = m
            .parse("wan.address", |t| parse_list(t, parse_static_address))?
            .unwrap_or_default();
        if addresses.is_empty() {
            return Err(ProfileError::Missing("wan.address", "wan.mode=static"));
        }
        WanMode::Static {
            addresses,
            gateway: m.parse("wan.gateway", parse_ip)?,
            dns: m
                .parse("wan.dns", |t| parse_list(t, parse_ip))?
                .unwrap_or_default(),
        }
    } else {
        WanMode::Dhcp
    };
    Ok(Some(Wan { interface, mode }))
}

fn parse_provisioning(m: &Merged) -> Result<Option<Provisioning>, ProfileError> {
    let Some(registry) = m.parse("registry", parse_registry)? else {
        return Ok(None);
    };
    let fingerprint = m
        .parse("fingerprint", Fingerprint::parse)?
        .ok_or(ProfileError::Missing("fingerprint", "registry"))?;
    Ok(Some(Provisioning {
        registry,
        fingerprint,
        credential: m
            .parse("token", parse_token)?
            .unwrap_or(Credential::Anonymous),
        location: m.parse("location", parse_location)?,
    }))
}

fn parse_services(m: &Merged) -> Result<(Vec<ServiceSpec>, Vec<String>), ProfileError> {
    let mut services = Vec::new();
    let mut disabled = Vec::new();
    for (key, (value, origin)) in &m.entries {
        let Some((name, false)) = service_key(key) else {
            continue;
        };
        let invalid =
            |why: &str| ProfileError::Invalid(origin.clone(), key.to_string(), why.into());
        let argv = split_words(value).ok_or_else(|| invalid("unterminated double quote"))?;
        if argv.is_empty() {
            // An empty command disables a service that a lower layer (or
            // the firmware itself) defines.
            disabled.push(name.to_owned());
            continue;
        }
        let after_key = format!("service.{name}.after");
        let after = m
            .parse(&after_key, |t| {
                parse_list(t, |dep| {
                    if is_service_name(dep) {
                        Ok(dep.to_owned())
                    } else {
                        Err(format!("{dep:?} is not a milestone or service name"))
                    }
                })
            })?
            .unwrap_or_default();
        services.push(ServiceSpec {
            name: name.to_owned(),
            argv,
            after,
        });
    }
    Ok((services, disabled))
}

/// Merges the layers (earlier sources win) and validates the result.
pub fn resolve(layers: &[Layer]) -> Result<Profile, ProfileError> {
    let m = Merged::new(layers);
    let (services, disabled_services) = parse_services(&m)?;
    Ok(Profile {
        provisioning: parse_provisioning(&m)?,
        hostname: m
            .parse("hostname", parse_hostname)?
            .unwrap_or_else(|| DEFAULT_HOSTNAME.to_owned()),
        wan: parse_wan(&m)?,
        lan: m.parse("lan", parse_interface)?,
        lan_dns: m
            .parse("lan.dns", |t| {
                let l = parse_list(t, |a| {
                    a.parse::<std::net::Ipv6Addr>()
                        .map_err(|_| format!("{a:?} is not an IPv6 address"))
                })?;
                if l.len() > 3 {
                    return Err("at most 3 servers".into());
                }
                Ok(l)
            })?
            .unwrap_or_default(),
        node_args: m
            .parse("node.args", |t| {
                split_words(t).ok_or_else(|| "unterminated double quote".to_string())
            })?
            .unwrap_or_default(),
        data_device: m.parse("data", parse_path)?,
        config: m.parse("config", parse_path)?,
        ntp: m
            .parse("ntp", |t| parse_list(t, parse_host))?
            .unwrap_or_default(),
        modules: m
            .parse("modules", |t| parse_list(t, parse_module))?
            .unwrap_or_default(),
        services,
        disabled_services,
        trial_deadline: m.parse("upgrade.deadline", |t| match t.parse::<u64>() {
            Ok(s) if (30..=3600).contains(&s) => Ok(std::time::Duration::from_secs(s)),
            _ => Err(format!("{t:?} is not a number of seconds from 30 to 3600")),
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1: &str = "sha1:0123456789abcdef0123456789abcdef01234567";

    fn board() -> Layer {
        parse_file(
            Source::BoardDefaults,
            "# board defaults\n\
             hostname = router\n\
             wan = eth0\n\
             lan = eth1\n\
             modules = tun, veth\n\
             service.console = /bin/sh -l\n\
             service.babeld = babeld -I /run/babeld.pid\n\
             service.babeld.after = network\n",
        )
        .unwrap()
    }

    #[test]
    fn board_defaults_alone() {
        let p = resolve(&[board()]).unwrap();
        assert_eq!(p.hostname, "router");
        assert_eq!(
            p.wan,
            Some(Wan {
                interface: "eth0".into(),
                mode: WanMode::Dhcp
            })
        );
        assert_eq!(p.lan.as_deref(), Some("eth1"));
        assert_eq!(p.modules, ["tun", "veth"]);
        assert_eq!(p.provisioning, None);
        let names: Vec<_> = p.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["babeld", "console"]);
        assert_eq!(p.services[1].argv, ["/bin/sh", "-l"]);
        assert_eq!(p.services[0].after, ["network"]);
    }

    #[test]
    fn cmdline_overrides_board_and_disables_services() {
        let cmdline = parse_cmdline(&format!(
            "console=ttyS0 root=/dev/vda1 re6st.registry=http://reg.example/ \
             re6st.fingerprint={SHA1} re6st.token=abc re6st.location=FR,EU \
             re6st.hostname=r1 re6st.service.babeld= \
             \"re6st.service.node=re6stnet --registry x\" quiet"
        ))
        .unwrap();
        let p = resolve(&[board(), cmdline]).unwrap();
        assert_eq!(p.hostname, "r1");
        let prov = p.provisioning.unwrap();
        assert_eq!(prov.registry, "http://reg.example/");
        assert_eq!(prov.fingerprint.to_string(), SHA1);
        assert_eq!(prov.credential, Credential::Token("abc".into()));
        assert_eq!(prov.location.as_deref(), Some("FR,EU"));
        let names: Vec<_> = p.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["console", "node"]);
        assert_eq!(p.services[1].argv, ["re6stnet", "--registry", "x"]);
    }

    #[test]
    fn source_priority_does_not_depend_on_argument_order() {
        let fw = parse_file(Source::FwCfg, "hostname=fw\n").unwrap();
        let conf = parse_file(Source::ConfigPartition, "hostname=conf\nlan=br0\n").unwrap();
        let p = resolve(&[board(), conf.clone(), fw.clone()]).unwrap();
        assert_eq!((p.hostname.as_str(), p.lan.as_deref()), ("fw", Some("br0")));
        let p = resolve(&[fw, board(), conf]).unwrap();
        assert_eq!(p.hostname, "fw");
    }

    #[test]
    fn static_wan() {
        let l = parse_file(
            Source::ConfigPartition,
            "wan=eth0\nwan.mode=static\nwan.address=192.0.2.2/24, 2001:db8::2/64\n\
             wan.gateway=192.0.2.1\nwan.dns=192.0.2.53,2001:db8::53\n",
        )
        .unwrap();
        let p = resolve(&[l]).unwrap();
        let Some(Wan {
            mode:
                WanMode::Static {
                    addresses,
                    gateway,
                    dns,
                },
            ..
        }) = p.wan
        else {
            panic!("not static: {:?}", p.wan)
        };
        let addrs: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        assert_eq!(addrs, ["192.0.2.2/24", "2001:db8::2/64"]);
        assert_eq!(gateway, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(dns.len(), 2);
    }

    #[test]
    fn anonymous_without_token() {
        let l = parse_file(
            Source::FwCfg,
            &format!("registry=https://r/\nfingerprint={SHA1}\n"),
        )
        .unwrap();
        let prov = resolve(&[l]).unwrap().provisioning.unwrap();
        assert_eq!(prov.credential, Credential::Anonymous);
        assert_eq!(prov.location, None);
    }

    fn err(source: Source, text: &str) -> ProfileError {
        let layer = match source {
            Source::KernelCmdline => parse_cmdline(text),
            _ => parse_file(source, text),
        };
        match layer {
            Err(e) => e,
            Ok(l) => resolve(&[l]).expect_err(text),
        }
    }

    #[test]
    fn errors_say_where_and_what() {
        let b = Source::BoardDefaults;
        assert_eq!(
            err(b, "hostname=x\n\nnonsense\n").to_string(),
            "board defaults line 3: expected key=value"
        );
        assert_eq!(
            err(b, "colour=blue").to_string(),
            "board defaults line 1: unknown key \"colour\""
        );
        assert_eq!(
            err(Source::KernelCmdline, "quiet re6st.lan=a re6st.lan=b").to_string(),
            "kernel command line word 3: \"lan\" given twice in the same source"
        );
        assert_eq!(
            err(b, "registry=http://r/").to_string(),
            "fingerprint is required when registry is set"
        );
        assert_eq!(
            err(Source::FwCfg, "wan=eth0\nwan.mode=static").to_string(),
            "wan.address is required when wan.mode=static is set"
        );
        assert!(matches!(
            err(Source::KernelCmdline, "re6st.lan=\"eth0"),
            ProfileError::Unterminated(Source::KernelCmdline)
        ));
        assert!(matches!(
            err(Source::KernelCmdline, "re6st.lan"),
            ProfileError::Syntax(_)
        ));
    }

    #[test]
    fn invalid_values() {
        for (text, key) in [
            ("registry=ftp://r/\nfingerprint=sha1:00", "registry"),
            ("registry=http://r/\nfingerprint=sha1:00", "fingerprint"),
            ("registry=http://r/\nfingerprint=md4:00", "fingerprint"),
            ("registry=http://r/\nfingerprint=sha256:zz", "fingerprint"),
            ("registry=http://r/\nfingerprint=0011", "fingerprint"),
            (
                &format!("registry=http://r/\nfingerprint={SHA1}\ntoken=a b"),
                "token",
            ),
            (
                &format!("registry=http://r/\nfingerprint={SHA1}\nlocation=France"),
                "location",
            ),
            ("hostname=-bad", "hostname"),
            ("hostname=a..b", "hostname"),
            ("hostname=under_score", "hostname"),
            ("wan=eth0/1", "wan"),
            ("wan=averyveryverylongname", "wan"),
            ("wan=eth0\nwan.mode=pppoe", "wan.mode"),
            (
                "wan=eth0\nwan.mode=static\nwan.address=192.0.2.1",
                "wan.address",
            ),
            (
                "wan=eth0\nwan.mode=static\nwan.address=192.0.2.1/33",
                "wan.address",
            ),
            (
                "wan=eth0\nwan.mode=static\nwan.address=::1/129",
                "wan.address",
            ),
            (
                "wan=eth0\nwan.mode=static\nwan.address=::1/64\nwan.gateway=gw",
                "wan.gateway",
            ),
            ("data=vda2", "data"),
            ("modules=tun,../x", "modules"),
            ("ntp=a b", "ntp"),
            ("service.x=sleep \"1", "service.x"),
            ("service.x=sleep\nservice.x.after=a b", "service.x.after"),
        ] {
            match err(Source::ConfigPartition, text) {
                ProfileError::Invalid(_, k, _) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other}"),
            }
        }
    }

    #[test]
    fn service_key_names() {
        assert_eq!(service_key("service.node"), Some(("node", false)));
        assert_eq!(service_key("service.node.after"), Some(("node", true)));
        assert_eq!(service_key("service.after"), Some(("after", false)));
        assert_eq!(service_key("service."), None);
        assert_eq!(service_key("service.a.b"), None);
        assert_eq!(service_key("service..after"), None);
    }

    #[test]
    fn words() {
        assert_eq!(
            split_words(" a  \"b c\"d \"\" e\t").unwrap(),
            ["a", "b cd", "", "e"]
        );
        assert_eq!(split_words("a \"b"), None);
        assert!(split_words("").unwrap().is_empty());
    }

    #[test]
    fn default_profile_is_minimal() {
        assert_eq!(resolve(&[]).unwrap(), Profile::default());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC{0,200}") {
            if let Ok(l) = parse_file(Source::FwCfg, &text) {
                let _ = resolve(&[l]);
            }
            if let Ok(l) = parse_cmdline(&text) {
                let _ = resolve(&[l]);
            }
        }

        #[test]
        fn keyed_lines_never_panic(
            key in proptest::sample::select(SIMPLE_KEYS),
            value in "[ -~]{0,40}",
        ) {
            if let Ok(l) = parse_file(Source::FwCfg, &format!("{key}={value}\nwan=eth0\nregistry=http://r/\n")) {
                let _ = resolve(&[l]);
            }
        }

        #[test]
        fn fingerprint_round_trip(digest in proptest::collection::vec(proptest::num::u8::ANY, 32)) {
            let text = format!("sha256:{}", hex::encode(&digest));
            let fp = Fingerprint::parse(&text).unwrap();
            proptest::prop_assert_eq!(fp.to_string(), text);
            proptest::prop_assert_eq!(fp.digest, digest);
        }
    }
}
