//! The LAN behind a re6st router: router advertisements of a /64 of our
//! re6st subnet, so that hosts there reach the overlay by SLAAC.
//!
//! * [`ra`]: the advertisement itself and the choice of the /64 (pure).
//! * [`advertiser`]: `re6st lan`, the raw-socket shell.

pub mod advertiser;
pub mod ra;
