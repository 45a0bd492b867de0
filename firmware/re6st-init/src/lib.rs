//! Init of the re6st router firmware.

pub mod backoff;
pub mod clock;
pub mod control;
pub mod datapart;
pub mod datapart_io;
pub mod layout;
pub mod logging;
pub mod network;
pub mod proc;
pub mod profile;
pub mod sntp;
pub mod sources;
pub mod supervisor;
pub mod system;
