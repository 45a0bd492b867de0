//! Starting programs: services (each in its own session, so that stopping
//! one reaches all its processes) and one-off commands at boot.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where programs are looked up when PATH is unset (PID 1 gets no
/// environment from the kernel).
pub const DEFAULT_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

fn search_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned())
}

/// The executable `name` resolves to, if any.
pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    search_path()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| executable(p))
}

/// Runs a command to completion (boot phase only: the event loop's reaper
/// would steal its status) and returns its exit code (-1 if killed).
pub fn run(program: &Path, args: &[&str]) -> std::io::Result<i32> {
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .status()?;
    Ok(status.code().unwrap_or(-1))
}

/// Starts a service in a new session and process group; returns its pid.
/// Its standard input is init's (the console) with `console`, else
/// /dev/null; output goes to init's. The caller reaps it (the `Child`
/// handle is dropped without waiting).
pub fn spawn_service(
    argv: &[String],
    dir: &Path,
    env: &[(&str, &OsStr)],
    console: bool,
) -> std::io::Result<u32> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    if !console {
        cmd.stdin(Stdio::null());
    }
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", DEFAULT_PATH);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn()?;
    Ok(child.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs() {
        let sh = find_program("sh").unwrap();
        assert!(sh.is_absolute());
        assert_eq!(find_program("/bin/sh"), Some(PathBuf::from("/bin/sh")));
        assert_eq!(find_program("no-such-program-re6st"), None);
        let plain = std::env::temp_dir().join(format!("re6st-init-plain-{}", std::process::id()));
        std::fs::write(&plain, "").unwrap();
        let found = find_program(plain.to_str().unwrap());
        std::fs::remove_file(&plain).unwrap();
        assert_eq!(found, None, "not executable");
    }

    #[test]
    fn runs_commands_and_reports_codes() {
        let sh = find_program("sh").unwrap();
        assert_eq!(run(&sh, &["-c", "exit 3"]).unwrap(), 3);
        assert_eq!(run(&sh, &["-c", "kill -9 $$"]).unwrap(), -1);
        assert!(run(Path::new("/nonexistent"), &[]).is_err());
    }

    #[test]
    fn services_lead_their_own_session() {
        let pid = spawn_service(
            &["sh".into(), "-c".into(), "sleep 5".into()],
            Path::new("/"),
            &[],
            false,
        )
        .unwrap();
        let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid as i32))).unwrap();
        assert_eq!(sid.as_raw(), pid as i32);
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None).unwrap();
        assert!(spawn_service(&[], Path::new("/"), &[], false).is_err());
        assert!(spawn_service(&["/nonexistent".into()], Path::new("/"), &[], false).is_err());
    }
}
