//! The `re6stnet` daemon, the shell around `re6st-node-core`: `run` (the
//! entry point), `setup` (certificates, configuration, kernel state),
//! `event_loop` (events in, the core's effects out), `node` (what the
//! shell holds and how it carries out each effect), `tasks` (the slow
//! work, reporting back), `clock`, and the helpers they use.

pub mod babel_log;
pub mod child;
mod clock;
pub mod error;
mod event_loop;
pub mod handover;
pub mod instance;
pub mod log;
mod node;
pub mod options;
pub mod relay_source;
pub mod renewal;
pub mod run;
mod setup;
pub mod tasks;
