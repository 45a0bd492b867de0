//! `re6st node` (`re6stnet`): the entry point. Parses the options, runs
//! the node ([`setup::run`](super::setup::run) sets it up, then
//! [`event_loop`](super::event_loop) drives it) and starts over when a new
//! network configuration asks for it.

use std::ffi::OsString;
use std::process::ExitCode;

use super::error::NodeError;
use super::log::error;
use super::options::Options;

pub fn main(args: Vec<OsString>) -> ExitCode {
    let o = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    super::log::init(o.verbose);
    one_malloc_arena();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error(e);
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(super::setup::run(o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(NodeError::Restart) => {
            // Everything was cleaned up: start over with the same command
            // line, as upstream does after such a change.
            drop(rt);
            use std::os::unix::process::CommandExt;
            let mut args = std::env::args_os();
            let argv0 = args.next().unwrap_or_default();
            let e = std::process::Command::new("/proc/self/exe")
                .arg0(argv0)
                .args(args)
                .exec();
            error(format!("cannot restart: {e}"));
            ExitCode::FAILURE
        }
        Err(e) => {
            error(e);
            ExitCode::FAILURE
        }
    }
}

/// Kernel work and cache saves run on tokio's blocking threads, off the
/// loop; glibc would give each such thread its own malloc arena, kept for
/// good (about 80 KiB more private memory per node for a few small
/// allocations a second). They share the main one instead.
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
