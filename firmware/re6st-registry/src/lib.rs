//! re6st registry (in progress).

pub mod alloc;
pub mod certs;
pub mod community;
pub mod config;
pub mod db;
pub mod mail;
pub mod methods;
pub mod network;

use std::ffi::OsString;
use std::process::ExitCode;

/// Entry point of `re6st-registry`.
pub fn main(_args: Vec<OsString>) -> ExitCode {
    eprintln!("re6st-registry: not implemented yet");
    ExitCode::FAILURE
}
