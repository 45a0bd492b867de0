//! Home routers for labs: a node's namespace moved behind a NAT router,
//! with or without a UPnP Internet Gateway Device (Debian's miniupnpd).
//!
//! miniupnpd refuses to map ports while its WAN address is in a reserved
//! range, which ours (198.18.0.0/15) are, unless a STUN test finds it
//! behind a 1:1 NAT without filtering; so the lab's internet gets a small
//! STUN responder (`stun_responder.py`) and miniupnpd uses it.

use crate::netns::Lab;

/// The STUN responder's two addresses (on the internet namespace).
const STUN: [&str; 2] = ["198.18.0.10", "198.18.0.11"];
const STUN_PORTS: [u16; 2] = [3478, 3479];

/// Starts the STUN responder in namespace `inet`.
pub fn stun_server(lab: &mut Lab, log_dir: &std::path::Path) {
    lab.sh(
        "inet",
        &format!(
            "ip addr add {}/32 dev lo; ip addr add {}/32 dev lo",
            STUN[0], STUN[1]
        ),
    );
    let script = lab.temp_file("stun_responder.py", include_str!("stun_responder.py"));
    let (p1, p2) = (STUN_PORTS[0].to_string(), STUN_PORTS[1].to_string());
    lab.spawn(
        "inet",
        &[
            "python3",
            &script.display().to_string(),
            STUN[0],
            STUN[1],
            &p1,
            &p2,
        ],
        &log_dir.join("stun.log"),
    );
}

/// The WAN address of node `n`'s NAT router (the one the internet sees).
pub fn public_ip(n: u32) -> String {
    format!("198.18.{}.2", n + 1)
}

/// Moves node `n` (namespace `node_ns`, linked to `inet` by
/// [`crate::overlay::Overlay::start_with`]) behind a new router `gw{n}`
/// that masquerades its LAN 198.19.{n+1}.0/24 and, with `upnp`, runs
/// miniupnpd for it. The node gets 198.19.{n+1}.2.
pub fn nat_router(lab: &mut Lab, n: u32, node_ns: &str, upnp: bool, log_dir: &std::path::Path) {
    let i = n + 1;
    let gw = format!("gw{n}");
    let wan = format!("h{i}");
    lab.sh(node_ns, &format!("ip link del {wan}"));
    lab.add_ns(&gw);
    lab.link(
        "inet",
        &[&format!("198.18.{i}.1/24")],
        &gw,
        &[&format!("198.18.{i}.2/24")],
        &wan,
    );
    lab.link(
        &gw,
        &[&format!("198.19.{i}.1/24")],
        node_ns,
        &[&format!("198.19.{i}.2/24")],
        "lan",
    );
    lab.sh(&gw, &format!("ip route add default via 198.18.{i}.1"));
    lab.sh(node_ns, &format!("ip route add default via 198.19.{i}.1"));
    // The chains miniupnpd fills, hooked where a router's firewall would.
    let ruleset = format!(
        "table inet re6st_nat {{
  chain miniupnpd {{
  }}
  chain prerouting_miniupnpd {{
  }}
  chain postrouting_miniupnpd {{
  }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    jump miniupnpd
  }}
  chain prerouting {{
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
    oifname \"{wan}\" masquerade
  }}
}}
"
    );
    let rules = lab.temp_file(&format!("{gw}.nft"), &ruleset);
    lab.sh(&gw, &format!("nft -f {}", rules.display()));
    if !upnp {
        return;
    }
    let conf = lab.temp_file(
        &format!("{gw}-miniupnpd.conf"),
        &format!(
            "ext_ifname={wan}
listening_ip=lan
http_port=0
enable_upnp=yes
enable_natpmp=no
secure_mode=yes
system_uptime=yes
uuid=3d3cec3a-8cf0-11e0-98ee-00000000{i:04}
upnp_table_name=re6st_nat
upnp_nat_table_name=re6st_nat
ext_perform_stun=yes
ext_stun_host={}
ext_stun_port={}
allow 1024-65535 198.19.{i}.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
",
            STUN[0], STUN_PORTS[0]
        ),
    );
    let pid = lab.temp_file(&format!("{gw}-miniupnpd.pid"), "");
    lab.spawn(
        &gw,
        &[
            "miniupnpd",
            "-d",
            "-f",
            &conf.display().to_string(),
            "-P",
            &pid.display().to_string(),
        ],
        &log_dir.join(format!("miniupnpd-{gw}.log")),
    );
}

/// The port forwardings miniupnpd installed on node `n`'s router.
pub fn forwardings(lab: &Lab, n: u32) -> String {
    lab.sh(
        &format!("gw{n}"),
        "nft list chain inet re6st_nat prerouting_miniupnpd",
    )
    .lines()
    .filter(|l| l.contains("dnat"))
    .collect::<Vec<_>>()
    .join("\n")
}
