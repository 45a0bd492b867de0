//! The re6stnet node (in progress): today, the control of a stock babeld
//! (configuration, local control socket, routing table model).

pub mod babel;
pub mod daemon;
pub mod openvpn;
pub mod state;
pub mod tunnel;
