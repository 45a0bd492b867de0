//! The `re6stnet` daemon, the shell around `re6st-node-core`: `run` (the
//! entry point), `setup` (certificates, configuration, kernel state),
//! `event_loop` (events in, the core's effects out) and `node` (what the
//! shell holds beside the core, and which file carries out each effect):
//! `children` (babeld, the OpenVPN servers, `--daemon` commands),
//! `clients` (our tunnels' OpenVPNs), `peers` (datagrams, hooks, what we
//! announce, revoked peers dropped), `registry_calls` (bootstrap,
//! configuration, renewal), `routes` (babeld's lines and dumps, the
//! kernel's routes), `ctl` (`re6st ctl status`); `tasks` (the slow work,
//! reporting back), `clock`, and the helpers they use.
pub mod babel_log;
pub mod child;
mod children;
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
mod peers;
mod registry_calls;
pub mod relay_source;
pub mod renewal;
mod routes;
pub mod run;
mod setup;
pub mod tasks;
