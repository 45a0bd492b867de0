//! The node's long-running children (OpenVPN, babeld, `--daemon`
//! commands). They go when the node goes: killed when their handle drops
//! (a clean stop), and sent SIGTERM by the kernel when the node dies
//! without cleaning up (SIGKILL, OOM killer), so that no orphan keeps a
//! port or a tap that the restarted node needs.

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use tokio::process::Command;

/// A command for `program` that dies with the node.
pub fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.kill_on_drop(true);
    // The death signal follows the thread that forked: the node's runtime
    // is single-threaded, so that is the main thread, which lives as long
    // as the process.
    let parent = nix::unistd::getpid();
    // SAFETY: prctl, getppid and kill are async-signal-safe and the
    // closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Until exec the child has the node's SIGTERM handler, which
            // would swallow the death signal: the child would then exec
            // and outlive the node, holding its tap.
            nix::sys::signal::signal(Signal::SIGTERM, nix::sys::signal::SigHandler::SigDfl)
                .map_err(std::io::Error::from)?;
            set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
            // The node died between the fork and the prctl.
            if nix::unistd::getppid() != parent {
                let _ = nix::sys::signal::raise(Signal::SIGTERM);
            }
            Ok(())
        });
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The death signal arriving between fork and exec (the node killed
    /// just as it starts a child), while the node handles SIGTERM itself:
    /// the child dies instead of running its program as an orphan.
    #[tokio::test]
    async fn a_child_whose_node_dies_before_exec_does_not_run() {
        use std::os::unix::process::ExitStatusExt;
        let _handler =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let mut cmd = command("sh");
        cmd.args(["-c", "exit 3"]);
        // SAFETY: raise is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let _ = nix::sys::signal::raise(Signal::SIGTERM);
                Ok(())
            });
        }
        let status = cmd.status().await.unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "{status:?}");
    }

    #[tokio::test]
    async fn a_child_runs_and_is_reaped() {
        let status = command("sh").args(["-c", "exit 3"]).status().await.unwrap();
        assert_eq!(status.code(), Some(3));
    }
}
