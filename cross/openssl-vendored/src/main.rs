//! Empty: all the work happens in build.rs (see there).
fn main() {}
