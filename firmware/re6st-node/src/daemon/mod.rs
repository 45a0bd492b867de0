//! The `re6stnet` daemon: options, the peer protocol glue, and the event
//! loop that wires babeld, OpenVPN, the peer protocol and the tunnel
//! manager together.

pub mod babel_log;
pub mod child;
pub mod handover;
pub mod instance;
pub mod log;
pub mod options;
pub mod relay_source;
pub mod renewal;
pub mod run;
pub mod tasks;
