//! Init (PID 1) of the re6st router firmware.
//!
//! Boot: early mounts, host name, modules, loopback, sysctls; the
//! provisioning profile ([`profile`], [`sources`]); the data partition
//! ([`datapart`], [`datapart_io`]); the clock ([`clock`], [`timekeeping`],
//! [`sntp`]); the network ([`network`]). Then [`runtime`] supervises the
//! services ([`supervisor`]), provisions the node ([`provision`]), serves
//! the control socket ([`control`]) and logs to a RAM ring ([`logging`]),
//! until a reboot or poweroff request stops it all cleanly ([`system`]).
//!
//! Pure decision logic (profile, data partition, clock, supervisor,
//! back-off, network plan) is kept apart from the code that acts on it.

pub mod backoff;
pub mod bootslot;
pub mod cli;
pub mod clock;
pub mod control;
pub mod datapart;
pub mod datapart_io;
pub mod firmware_services;
pub mod layout;
pub mod logging;
pub mod manifest;
pub mod network;
pub mod proc;
pub mod profile;
pub mod provision;
pub mod runtime;
pub mod sntp;
pub mod sources;
pub mod supervisor;
pub mod system;
pub mod timekeeping;
pub mod trial;
pub mod upgrade;

pub use cli::main;
