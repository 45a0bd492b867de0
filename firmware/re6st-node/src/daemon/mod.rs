//! The `re6stnet` daemon (in progress): its options today; the event loop
//! that wires babeld, OpenVPN, the peer protocol and the tunnel manager
//! together comes next.

pub mod options;
