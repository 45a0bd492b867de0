//! Init of the re6st router firmware.

pub mod backoff;
pub mod clock;
pub mod control;
pub mod datapart;
pub mod logging;
pub mod profile;
pub mod sntp;
pub mod supervisor;
