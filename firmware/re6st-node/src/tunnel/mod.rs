//! Tunnel management: which client tunnels to open, keep and drop, so the
//! overlay stays a well-connected random graph (upstream `TunnelManager`).
//!
//! [`manager::Manager`] is a pure state machine: the daemon feeds it the
//! routing view from babeld, tunnel and peer events and the time, and
//! carries out the [`manager::Action`]s it returns.

pub mod manager;
