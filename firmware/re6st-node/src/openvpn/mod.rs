//! OpenVPN, as the node runs it: one server per `--pp` port/protocol and
//! one client per outgoing tunnel, all in tap mode with the re6st
//! certificates.
//!
//! * [`args`]: the command lines (upstream's `plib.server`/`plib.client`).
//! * [`hook`]: connect/disconnect events from OpenVPN to the daemon. The
//!   multi-call binary is its own hook (`re6st ovpn-hook SOCKET`): no
//!   Python scripts, and the daemon can refuse a revoked peer at connect.

pub mod args;
pub mod hook;
pub mod management;
