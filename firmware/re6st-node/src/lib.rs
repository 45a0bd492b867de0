//! The re6stnet node: stock babeld control, OpenVPN tunnels, state files,
//! the sans-IO tunnel manager, the daemon's event loop, and the LAN side
//! (router advertisements).

pub mod babel;
pub mod core;
pub mod daemon;
pub mod kernel;
pub mod lan;
pub mod nat;
pub mod openvpn;
pub mod state;
pub mod status;
pub mod tunnel;
pub mod underlay;
