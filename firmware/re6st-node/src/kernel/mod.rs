//! The node's changes to the kernel's network state as typed values
//! ([`NetOp`]), carried out over rtnetlink ([`netlink`]); set-up as one
//! [`Setup`] guard that undoes exactly what it did, on every way out.

pub mod guard;
pub mod netlink;
pub mod op;
mod tap;

pub use guard::Setup;
pub use op::{Addr, NetOp, Route, RouteKind};

/// A kernel operation that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("{op} failed: {source}")]
pub struct KernelError {
    /// The operation, as the `ip` command doing the same.
    pub op: String,
    pub source: std::io::Error,
}

/// Carries out `op` on a socket of its own.
pub fn apply(op: &NetOp) -> Result<(), KernelError> {
    netlink::Netlink::open()
        .and_then(|mut nl| nl.apply(op))
        .map_err(|source| KernelError {
            op: op.to_string(),
            source,
        })
}

/// Carries out `ops` in order, logging (at `verbose` 1) those that fail:
/// for changes that may fail harmlessly.
pub fn apply_logged(ops: &[NetOp], verbose: u8) {
    for op in ops {
        crate::daemon::log::log(3, verbose, op);
        if let Err(e) = apply(op) {
            crate::daemon::log::log(1, verbose, e);
        }
    }
}
