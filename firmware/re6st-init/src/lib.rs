//! Init of the re6st router firmware.

pub mod backoff;
pub mod clock;
pub mod datapart;
pub mod profile;
pub mod sntp;
