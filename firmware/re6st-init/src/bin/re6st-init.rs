//! Stand-alone `init`, for tests and hosts; the firmware runs the same
//! code from the multi-call `re6st` binary.

fn main() -> std::process::ExitCode {
    re6st_init::main(std::env::args_os().collect())
}
