//! The binary under upstream's command names, as packages install it
//! (links `re6stnet`, `re6st-conf`, `re6st-registry`, `re6st-ctl`) and as
//! users type them: each name runs that command, with no subcommand word.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use re6st_testkit::netns::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_re6st");

/// Each command's name and the first line of its help.
const APPLETS: [(&str, &str); 4] = [
    ("re6stnet", "Resilient, scalable IPv6 overlay node."),
    (
        "re6st-conf",
        "Set up the certificate and configuration of a re6st node.",
    ),
    (
        "re6st-registry",
        "re6stnet registry used to bootstrap nodes and deliver certificates.",
    ),
    (
        "re6st-ctl",
        "Show the state of the re6st node running on this host, or the network's map",
    ),
];

/// A directory of links to the binary, one per command name, removed
/// (with everything the test wrote in it) when dropped.
struct Links(PathBuf);

impl Links {
    fn new() -> Links {
        let dir = std::env::temp_dir().join(format!("re6st-applets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, _) in APPLETS {
            std::os::unix::fs::symlink(BIN, dir.join(name)).unwrap();
        }
        Links(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    /// Runs `name` found through PATH, as a user types it (argv[0] is the
    /// bare name).
    fn run(&self, name: &str, args: &[&str]) -> std::process::Output {
        let path = format!(
            "{}:{}",
            self.0.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(name)
            .args(args)
            .env("PATH", path)
            .output()
            .unwrap()
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn each_command_name_runs_its_command() {
    let links = Links::new();
    for (name, about) in APPLETS {
        let out = links.run(name, &["--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name} --help: {}\n{help}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(help.contains(about), "{name} --help:\n{help}");
        for (other, other_about) in APPLETS {
            assert!(
                other == name || !help.contains(other_about),
                "{name} --help is {other}'s:\n{help}"
            );
        }
    }

    // One real action each, in a namespace of our own: re6st-registry
    // makes a network and serves it, re6st-conf gets a certificate from
    // it, re6stnet runs the registry's node, re6st-ctl asks that node.
    let dir = &links.0;
    let d = |s: &str| dir.join(s).display().to_string();
    let out = links.run(
        "re6st-registry",
        &["--init-network", "2001:db8:42::/48", "--dir", &d("reg")],
    );
    assert!(
        out.status.success() && Path::new(&d("reg/ca.crt")).exists(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lab = Lab::new();
    lab.add_ns("a");
    lab.add_ns("inet");
    lab.link("inet", &["198.18.1.1/24"], "a", &["198.18.1.2/24"], "h1");
    let registry = links.path("re6st-registry");
    let argv = [
        registry.as_str(),
        "--port",
        "9080",
        "-4",
        "198.18.1.2",
        "-6",
        "",
        "--ca",
        &d("reg/ca.crt"),
        "--key",
        &d("reg/ca.key"),
        "--dh",
        &d("reg/dh.pem"),
        "--db",
        &d("reg/registry.db"),
        "-l",
        &d("reg/registry.log"),
        "-r",
        &d("node/run"),
        "--anonymous-prefix-length",
        "16",
    ];
    lab.spawn("a", &argv, &dir.join("registry.out"));
    assert!(
        Lab::wait_until(Duration::from_secs(20), || lab
            .try_sh("a", "bash -c 'exec 3<>/dev/tcp/198.18.1.2/9080'")),
        "re6st-registry does not serve: {}",
        std::fs::read_to_string(dir.join("registry.out")).unwrap_or_default()
    );

    std::fs::create_dir_all(d("node")).unwrap();
    let conf = lab.sh(
        "a",
        &format!(
            "PATH={}:$PATH re6st-conf --registry http://198.18.1.2:9080/ --anonymous --dir {} 2>&1",
            dir.display(),
            d("node")
        ),
    );
    let subnet = conf
        .lines()
        .find_map(|l| l.strip_prefix("Your subnet: "))
        .unwrap_or_else(|| panic!("re6st-conf:\n{conf}"));
    assert!(
        Path::new(&d("node/cert.crt")).exists(),
        "re6st-conf:\n{conf}"
    );
    let address = format!("{}1", subnet.split('/').next().unwrap());

    let node = links.path("re6stnet");
    let conf_arg = format!("@{}", d("node/re6stnet.conf"));
    let argv = [
        node.as_str(),
        &conf_arg,
        "--ca",
        &d("node/ca.crt"),
        "--cert",
        &d("node/cert.crt"),
        "--key",
        &d("node/cert.key"),
        "-s",
        &d("node/state"),
        "-r",
        &d("node/run"),
        "-l",
        &d("node/log"),
        "--ip",
        "198.18.1.2",
    ];
    lab.spawn("a", &argv, &dir.join("node.out"));
    let mut status = None;
    let answered = Lab::wait_until(Duration::from_secs(30), || {
        let out = links.run("re6st-ctl", &["status", "--json", "-r", &d("node/run")]);
        status = serde_json::from_slice::<serde_json::Value>(&out.stdout).ok();
        status.is_some()
    });
    assert!(
        answered,
        "re6st-ctl got no status from re6stnet:\n{}",
        std::fs::read_to_string(dir.join("node.out")).unwrap_or_default()
    );
    let status = status.unwrap();
    assert_eq!(status["address"], address.as_str(), "{status}");
    // The node runs with the network's configuration, fetched from the
    // registry.
    assert!(status["config_version"].as_u64() >= Some(1), "{status}");
    drop(lab);
}
