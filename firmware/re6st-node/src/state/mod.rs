//! The node's state directory: files written atomically (routers lose
//! power), read back defensively (a corrupt file is reported and replaced,
//! never fatal).
//!
//! * [`peers`]: the peer address cache.

pub mod netconfig;
pub mod peers;

/// Crash-safe writes (temp file, fsync, rename, fsync of the directory),
/// shared with `re6st-conf`.
pub use re6st_conf::files::write_atomic;
