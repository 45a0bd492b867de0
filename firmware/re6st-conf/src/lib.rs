//! `re6st-conf`: set up a node's identity from a registry, as upstream's
//! command of the same name does: fetch and pin the CA, generate (or reuse)
//! the key, request a certificate with a token or anonymously, write
//! `ca.crt`, `cert.key`, `cert.crt` and a sample `re6stnet.conf`.
//!
//! [`provision`] is the library entry used both by the command and by
//! the firmware's zero-touch first boot.

pub mod cli;
pub mod files;
pub mod request;

pub use cli::main;
pub use request::{provision, ProvisionError, ProvisionRequest, Provisioned, TokenSource};
