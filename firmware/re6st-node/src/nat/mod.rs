//! Being reachable from outside: the addresses we announce to peers
//! ([`advertised`], sans-IO) and UPnP IGD port mappings on a home
//! router's NAT ([`upnp`]).

pub mod advertised;
pub mod upnp;
