//! The `re6stnet` daemon: options, the peer protocol glue, and the event
//! loop that wires babeld, OpenVPN, the peer protocol and the tunnel
//! manager together.

pub mod babel_log;
pub mod child;
pub mod handover;
pub mod instance;
pub mod log;
pub mod options;
pub mod peer_link;
pub mod reconfig;
pub mod relay_source;
pub mod renewal;
pub mod restart_backoff;
pub mod run;
pub mod tasks;
