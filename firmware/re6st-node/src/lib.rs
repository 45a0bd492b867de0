//! The re6stnet node's shell: stock babeld control, OpenVPN tunnels,
//! kernel operations, state files, the daemon's event loop, and the LAN
//! side (router advertisements). Its decisions are in package
//! `re6st-node-core` (sans-IO), which this shell feeds and obeys.

pub mod babel;
pub mod daemon;
pub mod kernel;
pub mod lan;
pub mod nat;
pub mod openvpn;
pub mod state;
pub mod status;
pub mod underlay;
