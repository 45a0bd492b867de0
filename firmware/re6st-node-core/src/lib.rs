//! The re6stnet node's decisions, with no I/O: the shell (package
//! `re6st-node`) reads sockets, files and clocks, runs processes, and
//! feeds what it sees to these state machines as inputs, then carries out
//! the effects they return.
//!
//! * [`node`]: [`node::NodeCore`], every event the daemon handles;
//! * [`tunnel`]: the tunnel manager (upstream `TunnelManager`);
//! * [`peer_link`]: sessions of the UDP peer protocol;
//! * [`peer_cache`]: the peer address cache (upstream `cache.py`);
//! * [`reconfig`]: what a new network configuration changes;
//! * [`restart_backoff`]: when a crashed child is started again;
//! * [`hook_event`], [`connections`]: what OpenVPN's hooks report.
//!
//! That this crate does no I/O is checked at build time: its dependencies
//! are pure, and its `clippy.toml` forbids std's files, sockets,
//! processes, threads and clock reads (`make check` runs clippy with
//! warnings as errors).

pub mod connections;
pub mod hook_event;
pub mod node;
pub mod peer_cache;
pub mod peer_link;
pub mod reconfig;
pub mod restart_backoff;
pub mod tunnel;

#[cfg(test)]
mod tests {
    /// The core's dependencies stay pure: a crate that does I/O (tokio,
    /// nix, libc, sockets, the registry client) would let decisions wait on
    /// the world again. Read at compile time from this crate's manifest.
    #[test]
    fn dependencies_do_no_io() {
        let manifest = include_str!("../Cargo.toml");
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .expect("a [dependencies] table");
        let names: Vec<&str> = deps
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.split(['.', ' ', '=']).next())
            .collect();
        assert_eq!(
            names,
            ["re6st-proto", "serde", "thiserror", "postcard", "heapless"]
        );
    }
}
