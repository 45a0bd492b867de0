//! re6st protocol core: every wire and on-disk convention of upstream
//! re6stnet (protocol 10) as pure functions and state machines.
//!
//! Nothing here opens a socket, reads a clock, spawns a process or touches
//! a file: callers pass time, randomness and bytes in, and get bytes and
//! decisions out. OpenSSL is used as a computation library only.

pub mod address;
pub mod babel_ctl;
pub mod cert;
pub mod civil;
pub mod crypto;
pub mod dh;
pub mod journal;
pub mod message;
pub mod netconfig;
pub mod options;
pub mod packint;
pub mod peer;
pub mod prefix;
pub mod relay;
pub mod rpc;

/// The protocol number we speak (upstream's `version.protocol`).
pub const PROTOCOL: u32 = 10;

/// UDP port of the node-to-node protocol.
pub const PEER_PORT: u16 = 326;
