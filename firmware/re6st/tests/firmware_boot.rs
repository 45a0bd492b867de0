//! The firmware's boots, on the host: `re6st init` as PID 1 of its own PID
//! namespace, in a router network namespace (WAN on a simulated internet,
//! a LAN with a host behind it), with a registry and a node elsewhere.
//!
//! - Power cuts: SIGKILL of PID 1 (the kernel then kills every process of
//!   the namespace) at 20 random moments from the first, unprovisioned
//!   boot on; the network namespace is recreated at each boot, as a
//!   router's kernel state would be; only the data directory survives.
//! - The boot after them ends provisioned, with the identity of the first
//!   complete provisioning; the router's node reaches the overlay and a
//!   LAN host gets a SLAAC address and reaches a node across the overlay.
//! - A clean reboot with the registry gone: same identity, cached network
//!   configuration, overlay reached again; then a clean poweroff.
//! - A first boot with the clock at 1970: time from the registry's HTTP
//!   `Date`, provisioned, in the overlay (init's `overlay reached:` line
//!   and status).

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openssl::x509::X509;
use re6st_proto::cert;
use re6st_testkit::netns::Lab;
use re6st_testkit::overlay::{Overlay, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_re6st");
const WAN: &str = "198.18.100.2";

struct Router {
    root: PathBuf,
    /// `VAR=value` set for init and everything it starts.
    env: Vec<String>,
    boots: u32,
    /// The `unshare` process holding PID 1 of the current boot.
    holder: Option<u32>,
}

impl Router {
    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log(&self) -> PathBuf {
        self.root
            .parent()
            .unwrap()
            .join(format!("boot-{}.log", self.boots))
    }

    fn boot(&mut self, lab: &mut Lab) {
        self.boots += 1;
        // Fresh kernel network state, as after a real power cycle.
        lab.remove_ns("host");
        lab.remove_ns("rt");
        // The namespace may outlive `ip netns del` for a moment, and its
        // veth with it: drop our end now.
        lab.try_sh("inet", "ip link del wan0");
        lab.add_ns("rt");
        lab.add_ns("host");
        lab.sh("host", "sysctl -qw net.ipv6.conf.all.forwarding=0");
        lab.link("inet", &["198.18.100.1/24"], "rt", &[], "wan0");
        lab.link("rt", &[], "host", &[], "lan0");
        let root = self.root.display().to_string();
        let log = self.log();
        let mut argv: Vec<&str> = vec!["env"];
        argv.extend(self.env.iter().map(String::as_str));
        argv.extend([
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            BIN,
            "init",
            "--root",
            &root,
            "--network",
            "-v",
        ]);
        self.holder = Some(lab.spawn("rt", &argv, &log));
    }

    fn ctl(&self, cmd: &str) -> Option<String> {
        let out = Command::new(BIN)
            .args(["init", cmd, "--root"])
            .arg(&self.root)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn boot_log(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Power cut: PID 1 dies, and the kernel kills its namespace.
    fn cut(&mut self) {
        let pid = self.holder.expect("booted");
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        self.wait_stopped(Duration::from_secs(10), "survived SIGKILL");
    }

    /// Waits until the current boot's PID 1 holder has exited (gone, or a
    /// zombie our lab reaps at the end); `what` says what it failed to do.
    fn wait_stopped(&mut self, limit: Duration, what: &str) {
        let pid = self.holder.take().expect("booted");
        assert!(
            Lab::wait_until(limit, || !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))),
            "PID 1 holder {pid}: {what}"
        );
    }

    /// PID 1 of the current boot (the child of `unshare`).
    fn pid1(&self) -> u32 {
        let holder = self.holder.expect("booted");
        let out = Command::new("pgrep")
            .args(["-P", &holder.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("init under unshare")
    }

    /// The identity on the data partition: (certificate PEM, re6st address)
    /// when complete and consistent (key matching the certificate, CA
    /// being the network's).
    fn identity(&self, ca: &X509) -> Option<(Vec<u8>, Ipv6Addr)> {
        let dir = self.data().join("re6st");
        let pem = std::fs::read(dir.join("cert.crt")).ok()?;
        let crt = X509::from_pem(&pem).ok()?;
        let key =
            openssl::pkey::PKey::private_key_from_pem(&std::fs::read(dir.join("cert.key")).ok()?)
                .ok()?;
        let ca_on_disk = X509::from_pem(&std::fs::read(dir.join("ca.crt")).ok()?).ok()?;
        if !crt.public_key().ok()?.public_eq(&key)
            || ca_on_disk.to_der().ok()? != ca.to_der().ok()?
            || !dir.join("re6stnet.conf").exists()
        {
            return None;
        }
        let network = cert::network_from_ca(ca).ok()?;
        let subnet = network.concat(&cert::node_prefix(&crt).ok()?).ok()?;
        let addr = Ipv6Addr::from(u128::from(subnet.to_ipv6()) | 1);
        Some((pem, addr))
    }
}

impl Router {
    /// A router below the overlay's directory, with its board profile.
    fn new(o: &Overlay, ca: &X509, env: Vec<String>) -> Router {
        let r = Router {
            root: o.dir.join("router"),
            env,
            boots: 0,
            holder: None,
        };
        std::fs::create_dir_all(r.root.join("etc/re6st")).unwrap();
        std::fs::write(
            r.root.join("etc/re6st/profile"),
            format!(
                "registry = http://198.18.1.2:9080/\n\
                 fingerprint = {}\n\
                 hostname = router\n\
                 wan = wan0\nwan.mode = static\nwan.address = {WAN}/24\nwan.gateway = 198.18.100.1\n\
                 lan = lan0\nlan.dns = 2001:db8::53\n\
                 node.args = --ip {WAN} -v 3\n",
                sha256_fingerprint(ca)
            ),
        )
        .unwrap();
        r
    }
}

/// xorshift, seeded from the clock (printed, to replay a failure).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn sha256_fingerprint(ca: &X509) -> String {
    let d = ca.digest(openssl::hash::MessageDigest::sha256()).unwrap();
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

#[test]
fn first_boot_power_cuts_lan_and_registry_less_reboot() {
    // The registry with its node (node0) and one more node (node1).
    let mut o = Overlay::start(BIN.as_ref(), Registry::Ours, 2, None, &[]);
    o.all_pairs_reach(Duration::from_secs(120));
    let ca = X509::from_pem(&std::fs::read(o.dir.join("registry/ca.crt")).unwrap()).unwrap();
    let mut r = Router::new(&o, &ca, vec![]);

    // 20 power cuts, from the very first (unprovisioned) boot on.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("power cut seed {seed}");
    let mut rng = Rng(seed);
    let mut first_identity: Option<Vec<u8>> = None;
    for cut in 0..20 {
        r.boot(&mut o.lab);
        let up = Instant::now();
        assert!(
            Lab::wait_until(Duration::from_secs(20), || r.ctl("status").is_some()),
            "boot {} after {cut} power cuts did not come up:\n{}",
            r.boots,
            r.boot_log()
        );
        std::thread::sleep(Duration::from_millis(rng.below(5000)));
        let at = up.elapsed();
        r.cut();
        match (&first_identity, r.identity(&ca)) {
            (None, Some((pem, _))) => first_identity = Some(pem),
            (Some(first), Some((pem, _))) => assert!(
                *first == pem,
                "identity changed at power cut {cut} ({at:?} after boot)"
            ),
            (Some(_), None) => panic!(
                "provisioned identity lost or damaged at power cut {cut} ({at:?} after boot)"
            ),
            (None, None) => {}
        }
    }

    // The next boot ends provisioned, with the same identity, and routes.
    r.boot(&mut o.lab);
    assert!(
        Lab::wait_until(Duration::from_secs(90), || r.ctl("status").is_some_and(
            |s| s.contains("provisioned")
                && s.lines()
                    .any(|l| l.split_whitespace().take(2).eq(["re6st-node", "running"]))
        )),
        "not provisioned: {:?}\n{}",
        r.ctl("status"),
        r.boot_log()
    );
    let (pem, router_addr) = r.identity(&ca).expect("consistent identity");
    if let Some(first) = &first_identity {
        assert!(*first == pem, "identity changed after the power cuts");
    }
    let node1 = o.addrs[1].clone();
    let reach = |lab: &Lab, ns: &str, to: &str| {
        Lab::wait_until(Duration::from_secs(90), || {
            lab.try_sh(ns, &format!("ping -6 -c1 -W1 {to}"))
        })
    };
    assert!(
        reach(&o.lab, "rt", &node1),
        "router cannot reach node1 ({node1}):\n{}",
        r.boot_log()
    );
    assert!(reach(&o.lab, "n1", &router_addr.to_string()));
    let route = o.lab.sh("n1", &format!("ip -6 route get {router_addr}"));
    assert!(route.contains("re6stnet"), "not over the overlay: {route}");
    // The LAN host: SLAAC in the router's /64, then node1 across the overlay.
    let lan64 = format!("{:x}:", u128::from(router_addr) >> 112);
    assert!(
        Lab::wait_until(Duration::from_secs(30), || o
            .lab
            .sh("host", "ip -6 addr show dev lan0 scope global")
            .contains(&lan64)),
        "LAN host got no address in {router_addr}/64: {}",
        o.lab.sh("host", "ip -6 addr")
    );
    assert!(
        reach(&o.lab, "host", &node1),
        "LAN host cannot reach node1: {}",
        o.lab.sh("host", "ip -6 addr; ip -6 route")
    );

    // Clean reboot (SIGTERM to PID 1, as busybox init), registry gone.
    let pid1 = r.pid1();
    let _ = Command::new("kill")
        .args(["-TERM", &pid1.to_string()])
        .status();
    r.wait_stopped(Duration::from_secs(40), "init did not stop");
    assert!(
        r.boot_log().contains("stopped (reboot)"),
        "{}",
        r.boot_log()
    );
    let _ = Command::new("kill")
        .args(["-9", &o.registry_pid.to_string()])
        .status();
    r.boot(&mut o.lab);
    assert!(
        reach(&o.lab, "rt", &node1),
        "router cannot reach node1 without the registry:\n{}",
        r.boot_log()
    );
    assert_eq!(r.identity(&ca).map(|i| i.0), Some(pem));
    assert!(
        r.boot_log()
            .contains("using the cached network configuration"),
        "{}",
        r.boot_log()
    );

    // Clean poweroff through the control socket: services stopped, data
    // left without temporary files.
    assert!(r.ctl("poweroff").is_some());
    r.wait_stopped(Duration::from_secs(40), "init did not power off");
    assert!(
        r.boot_log().contains("stopped (poweroff)"),
        "{}",
        r.boot_log()
    );
    let leftovers = Command::new("find")
        .arg(r.data())
        .args(["-name", "*.tmp"])
        .output()
        .unwrap();
    assert!(
        leftovers.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&leftovers.stdout)
    );
    o.finish();
}

#[test]
fn first_boot_with_the_clock_at_1970() {
    let mut o = Overlay::start(BIN.as_ref(), Registry::Ours, 2, None, &[]);
    o.all_pairs_reach(Duration::from_secs(120));
    let ca = X509::from_pem(&std::fs::read(o.dir.join("registry/ca.crt")).unwrap()).unwrap();
    // The router's whole process tree runs on a libfaketime clock that
    // starts at 1970-01-01 (an offset of minus now); init setting the
    // clock rewrites that offset.
    let clock = o.dir.join("faketime");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(&clock, format!("-{now}\n")).unwrap();
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(Path::new(lib).exists(), "libfaketime missing: make deps");
    let mut r = Router::new(
        &o,
        &ca,
        vec![
            format!("LD_PRELOAD={lib}"),
            format!("FAKETIME_TIMESTAMP_FILE={}", clock.display()),
            "FAKETIME_NO_CACHE=1".into(),
            "FAKETIME_DONT_FAKE_MONOTONIC=1".into(),
        ],
    );
    // An image built in 2020: the clock's first floor, still before our
    // certificates, so only the registry's Date can make them valid.
    Command::new("touch")
        .args(["-d", "2020-01-01 00:00:00"])
        .arg(r.root.join("etc/re6st/profile"))
        .status()
        .unwrap();
    r.boot(&mut o.lab);
    let node1 = o.addrs[1].clone();
    assert!(
        Lab::wait_until(Duration::from_secs(90), || o
            .lab
            .try_sh("rt", &format!("ping -6 -c1 -W1 {node1}"))),
        "router cannot reach node1:\n{}",
        r.boot_log()
    );
    let log = r.boot_log();
    assert!(log.contains("clock set to Wed, 01 Jan 2020"), "{log}");
    assert!(log.contains("(HttpDate; libfaketime)"), "{log}");
    let offset: i64 = std::fs::read_to_string(&clock)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(offset.abs() < 30, "clock still off by {offset} s");
    assert!(r.identity(&ca).is_some());
    // Init's line for boot timings (qemu-tests' SMOKE_OVERLAY): node0 is
    // the registry's node, and the router reaches node1 through it.
    assert!(
        Lab::wait_until(Duration::from_secs(30), || r.boot_log().contains(
            "overlay reached: an established tunnel and a route to the registry's node"
        )),
        "{}",
        r.boot_log()
    );
    let status = r.ctl("status").unwrap_or_default();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("overlay: reached ") && l.ends_with("s after init started")),
        "{status}"
    );
    o.finish();
}
