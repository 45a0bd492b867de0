//! The `re6stnet` daemon, the shell around `re6st-node-core`: `run` (the
//! entry point), `setup` (certificates, configuration, kernel state),
//! `event_loop` (events in, the core's effects out), `node` (what the
//! shell holds and how it carries out each effect, with `clients` for
//! our tunnels' OpenVPNs, `routes` for babeld and the kernel's routes,
//! `ctl` for `re6st ctl status`), `tasks` (the slow work, reporting
//! back), `clock`, and the helpers they use.

pub mod babel_log;
pub mod child;
mod clients;
mod clock;
mod ctl;
pub mod error;
mod event_loop;
pub mod handover;
pub mod instance;
pub mod log;
mod node;
pub mod options;
pub mod relay_source;
pub mod renewal;
mod routes;
pub mod run;
mod setup;
pub mod tasks;
