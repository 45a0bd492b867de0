//! Client of the re6st registry's HTTP RPC.
//!
//! [`transport`] does one HTTP GET; [`client`] adds the authenticated
//! session of upstream's `RegistryClient` (hello, per-call HMAC, ratchet).

pub mod call;
pub mod client;
pub mod transport;
