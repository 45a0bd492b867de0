//! The firmware's own services, derived from the profile: the re6st node
//! (once provisioned) and, with a LAN, the router advertisements of its
//! /64 and the status page (busybox httpd on the LAN address, when the
//! image has its script). A profile service of the same name replaces one of these (an
//! empty command disables it). Pure: the caller passes the paths.

use std::path::{Path, PathBuf};

use crate::profile::{Profile, ServiceSpec};
use crate::runtime::{CLOCK, NETWORK, PROVISIONED};

pub const NODE_SERVICE: &str = "re6st-node";
pub const LAN_SERVICE: &str = "re6st-lan";
pub const STATUS_SERVICE: &str = "status-page";

/// Where images keep the status page's service script (rootfs/).
pub const STATUS_HTTPD: &str = "/usr/lib/re6st/status-httpd";

/// Where things are on this system.
pub struct Paths {
    /// The multi-call binary (`re6st`).
    pub exe: PathBuf,
    /// Key, certificates and `re6stnet.conf` (on the data partition).
    pub identity: PathBuf,
    /// The node's state (caches) on the data partition.
    pub state: PathBuf,
    /// Runtime files and logs (RAM): flash is not worn by logs.
    pub run: PathBuf,
    /// The status page's script (`status-httpd LAN_IFACE`), when the
    /// system has it.
    pub status_httpd: Option<PathBuf>,
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

pub fn services(profile: &Profile, paths: &Paths) -> Vec<ServiceSpec> {
    if profile.provisioning.is_none() {
        return Vec::new();
    }
    let id = |f: &str| s(&paths.identity.join(f));
    let exe = s(&paths.exe);
    let mut node = vec![
        exe.clone(),
        "node".into(),
        format!("@{}", id("re6stnet.conf")),
        "--ca".into(),
        id("ca.crt"),
        "--cert".into(),
        id("cert.crt"),
        "--key".into(),
        id("cert.key"),
        "-s".into(),
        s(&paths.state),
        "-r".into(),
        s(&paths.run),
        "-l".into(),
        s(&paths.run.join("log")),
    ];
    if let Some(lan) = &profile.lan {
        // Our re6st address, and so the route to our subnet, on the LAN.
        node.extend(["-I".into(), lan.clone()]);
    }
    node.extend(profile.node_args.iter().cloned());
    let mut out = vec![ServiceSpec {
        name: NODE_SERVICE.into(),
        argv: node,
        after: vec![NETWORK.into(), CLOCK.into(), PROVISIONED.into()],
    }];
    if let Some(lan) = &profile.lan {
        let mut argv = vec![
            exe,
            "lan".into(),
            "-i".into(),
            lan.clone(),
            "--ca".into(),
            id("ca.crt"),
            "--cert".into(),
            id("cert.crt"),
        ];
        for d in &profile.lan_dns {
            argv.extend(["--dns".into(), d.to_string()]);
        }
        out.push(ServiceSpec {
            name: LAN_SERVICE.into(),
            argv,
            after: vec![PROVISIONED.into()],
        });
        // It waits for the LAN address, which the node adds.
        if let Some(script) = &paths.status_httpd {
            out.push(ServiceSpec {
                name: STATUS_SERVICE.into(),
                argv: vec![s(script), lan.clone()],
                after: vec![PROVISIONED.into()],
            });
        }
    }
    out.retain(|b| {
        !profile.services.iter().any(|p| p.name == b.name)
            && !profile.disabled_services.contains(&b.name)
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{parse_file, resolve, Source};

    fn profile(text: &str) -> Profile {
        resolve(&[parse_file(Source::BoardDefaults, text).unwrap()]).unwrap()
    }

    fn paths() -> Paths {
        Paths {
            exe: "/usr/bin/re6st".into(),
            identity: "/data/re6st".into(),
            state: "/data/node".into(),
            run: "/run/re6stnet".into(),
            status_httpd: Some(STATUS_HTTPD.into()),
        }
    }

    #[test]
    fn node_and_lan_from_the_profile() {
        assert!(services(&profile("hostname=x\n"), &paths()).is_empty());
        let p = profile(
            "registry=http://r/\nfingerprint=sha1:0000000000000000000000000000000000000000\nlan=br0\nlan.dns=2001:db8::53\n\
             node.args=--ip 198.51.100.7 --country FR\n",
        );
        let s = services(&p, &paths());
        assert_eq!(s.len(), 3);
        let node = s[0].argv.join(" ");
        assert!(node
            .starts_with("/usr/bin/re6st node @/data/re6st/re6stnet.conf --ca /data/re6st/ca.crt"));
        assert!(
            node.ends_with("-I br0 --ip 198.51.100.7 --country FR"),
            "{node}"
        );
        assert_eq!(s[0].after, ["network", "clock", "provisioned"]);
        assert_eq!(
            s[1].argv.join(" "),
            "/usr/bin/re6st lan -i br0 --ca /data/re6st/ca.crt --cert /data/re6st/cert.crt --dns 2001:db8::53"
        );
        assert_eq!(s[2].argv.join(" "), "/usr/lib/re6st/status-httpd br0");
        assert_eq!(s[2].after, ["provisioned"]);
        // A system without the script (a test root) has no status page.
        let bare = Paths {
            status_httpd: None,
            ..paths()
        };
        assert!(services(&p, &bare).iter().all(|s| s.name != STATUS_SERVICE));
        // A profile service of the same name wins.
        let p = profile("registry=http://r/\nfingerprint=sha1:0000000000000000000000000000000000000000\nservice.re6st-node=my-node\n");
        let s = services(&p, &paths());
        assert!(s.is_empty());
        // An empty command disables it.
        let p = profile("registry=http://r/\nfingerprint=sha1:0000000000000000000000000000000000000000\nlan=br0\nservice.re6st-lan=\nservice.status-page=\n");
        let s = services(&p, &paths());
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, NODE_SERVICE);
    }
}
