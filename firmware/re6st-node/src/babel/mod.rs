//! Stock babeld (Debian's 1.12), as the node uses it.
//!
//! * [`config`]: the command line equivalent to upstream's (our subnet
//!   only, hello interval, default interface parameters, HMAC keys,
//!   source-specific default routes, pref-src), plus a read-write local
//!   control socket instead of upstream's patched binary protocol.
//! * [`control`]: the text protocol of that socket, parsed into events.
//! * [`table`]: neighbours and routes built from those events, and the
//!   questions the tunnel manager asks of them.
//! * [`client`]: the tokio connection to the socket.
//! * [`monitor`]: its `monitor` stream, as "a neighbour came or went".
//! * [`upstream_ctl`]: upstream's binary control protocol, served on
//!   `RUN/babeld.sock` from stock babeld's dump, for upstream's registry.

pub mod client;
pub mod config;
pub mod control;
pub mod kernel_check;
pub mod monitor;
pub mod table;
pub mod upstream_ctl;
