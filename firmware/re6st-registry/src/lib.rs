//! re6st registry (in progress).

pub mod alloc;
pub mod certs;
pub mod community;
pub mod config;
pub mod db;
pub mod geoip;
pub mod mail;
pub mod methods;
pub mod network;
pub mod registry;
pub mod relay;
pub mod session;

use std::ffi::OsString;
use std::process::ExitCode;

/// Entry point of `re6st-registry`.
pub fn main(_args: Vec<OsString>) -> ExitCode {
    eprintln!("re6st-registry: not implemented yet");
    ExitCode::FAILURE
}
