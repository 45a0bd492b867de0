//! Init of the re6st router firmware.

pub mod backoff;
pub mod profile;
