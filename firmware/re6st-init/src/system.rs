//! What only PID 1 of a real router does: early mounts, host name, kernel
//! modules, loopback, sysctls, and the final unmount and reboot. Each
//! operation logs and carries on when it fails: a router that boots with
//! something missing can still be reached and repaired; one that stops in
//! init cannot.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::{debug, info, warn};

use crate::control::Shutdown;

/// An early mount: (source, target, filesystem type, flags, options).
pub type MountSpec = (
    &'static str,
    &'static str,
    &'static str,
    MsFlags,
    &'static str,
);

pub fn early_mounts() -> Vec<MountSpec> {
    let secure = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    vec![
        ("proc", "/proc", "proc", secure, ""),
        ("sysfs", "/sys", "sysfs", secure, ""),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            "mode=0755",
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            "gid=5,mode=0620,ptmxmode=0666",
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=0755,size=10%",
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=1777,size=20%",
        ),
    ]
}

/// Mounts the pseudo and RAM filesystems. Already mounted (the kernel
/// mounts devtmpfs itself with CONFIG_DEVTMPFS_MOUNT) is fine.
pub fn mount_early() {
    for (source, target, fstype, flags, data) in early_mounts() {
        // /dev/pts lives on the devtmpfs just mounted: create it.
        if target == "/dev/pts" {
            let _ = std::fs::create_dir_all(target);
        }
        let data = (!data.is_empty()).then_some(data);
        match mount(Some(source), target, Some(fstype), flags, data) {
            Ok(()) => debug!(target, "mounted"),
            Err(nix::errno::Errno::EBUSY) => debug!(target, "already mounted"),
            Err(e) => warn!(target, fstype, "cannot mount: {e}"),
        }
    }
}

pub fn set_hostname(name: &str) {
    match nix::unistd::sethostname(name) {
        Ok(()) => info!("host name {name}"),
        Err(e) => warn!("cannot set host name {name}: {e}"),
    }
}

/// The path of `module` in a `modules.dep`, relative to the modules
/// directory. Module names treat `-` and `_` alike.
pub fn find_module<'a>(modules_dep: &'a str, module: &str) -> Option<&'a str> {
    let want = module.replace('-', "_");
    modules_dep.lines().find_map(|line| {
        let path = line.split(':').next()?.trim();
        let file = path.rsplit('/').next()?;
        let name = file.split(".ko").next()?;
        (name.replace('-', "_") == want).then_some(path)
    })
}

fn load_module_file(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let params = CString::default();
    match nix::kmod::finit_module(&file, &params, nix::kmod::ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Loads kernel modules with `modprobe` if the image has one, else with
/// finit_module(2) from `/lib/modules/RELEASE` (dependencies must then be
/// listed first in the profile). Missing modules are only a warning: they
/// may be built in.
pub fn load_modules(modules: &[String]) {
    if modules.is_empty() {
        return;
    }
    if let Some(modprobe) = crate::proc::find_program("modprobe") {
        for m in modules {
            match crate::proc::run(&modprobe, &["-q", m]) {
                Ok(0) => debug!(module = m.as_str(), "loaded"),
                Ok(code) => warn!(module = m.as_str(), "modprobe failed ({code})"),
                Err(e) => warn!(module = m.as_str(), "modprobe: {e}"),
            }
        }
        return;
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = PathBuf::from("/lib/modules").join(release);
    let dep = std::fs::read_to_string(dir.join("modules.dep")).unwrap_or_default();
    for m in modules {
        match find_module(&dep, m) {
            Some(rel) => match load_module_file(&dir.join(rel)) {
                Ok(()) => debug!(module = m.as_str(), "loaded"),
                Err(e) => warn!(module = m.as_str(), "cannot load: {e}"),
            },
            None => debug!(module = m.as_str(), "not found (built in?)"),
        }
    }
}

/// Brings `lo` up with SIOCSIFFLAGS (no `ip` needed).
pub fn loopback_up() {
    // SAFETY: plain socket and ioctl calls on a zeroed, NUL-terminated
    // ifreq that outlives them; the descriptor is closed on every path.
    let result = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            let mut req: libc::ifreq = std::mem::zeroed();
            for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
                *dst = *src as libc::c_char;
            }
            let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
            if r == 0 {
                req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
            }
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if r == 0 {
                Ok(())
            } else {
                Err(err)
            }
        }
    };
    match result {
        Ok(()) => debug!("lo up"),
        Err(e) => warn!("cannot bring lo up: {e}"),
    }
}

pub fn write_sysctls(settings: &[(String, &str)]) {
    for (key, value) in settings {
        let path = Path::new("/proc/sys").join(key);
        if let Err(e) = std::fs::write(&path, value) {
            warn!("sysctl {key}={value}: {e}");
        }
    }
}

/// Sets the wall clock.
pub fn set_clock(t: std::time::SystemTime) -> Result<(), String> {
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    // time_t is 32 bits on armv7 and mipsel.
    let secs = libc::time_t::try_from(d.as_secs()).map_err(|e| e.to_string())?;
    // Below 10^9: fits a c_long of any width.
    let nanos = d.subsec_nanos() as libc::c_long;
    let ts = nix::sys::time::TimeSpec::new(secs, nanos);
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts).map_err(|e| e.to_string())
}

/// Pids whose parent is `parent`, from `/proc`.
pub fn children_of(parent: u32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parent_pid(&stat))
                == Some(parent)
        })
        .collect()
}

/// The ppid field of `/proc/PID/stat` (after the parenthesized command,
/// which may itself contain spaces and parentheses).
pub fn parent_pid(stat: &str) -> Option<u32> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Sends TERM, waits up to `grace` for them to go (reaping as they do),
/// then KILL, to every process left: all of them as PID 1, our children
/// (orphans handed to us as subreaper) otherwise.
pub fn kill_remaining(pid1: bool, grace: Duration) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let me = std::process::id();
    let remaining = || -> bool {
        // Reap whatever already exited, then look.
        while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if s == WaitStatus::StillAlive {
                break;
            }
        }
        if pid1 {
            // ECHILD: nobody left (every process ends up as our child).
            !matches!(
                waitpid(None, Some(WaitPidFlag::WNOHANG)),
                Err(nix::errno::Errno::ECHILD)
            )
        } else {
            !children_of(me).is_empty()
        }
    };
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        if !remaining() {
            return;
        }
        let targets = if pid1 { vec![-1] } else { children_of(me) };
        for pid in targets {
            // Each service leads its own process group: reach it all.
            if pid > 0 {
                let _ = kill(Pid::from_raw(-pid), signal);
            }
            let _ = kill(Pid::from_raw(pid), signal);
        }
        let deadline = Instant::now() + grace;
        while remaining() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if remaining() {
        warn!("some processes survived SIGKILL");
    }
}

/// The end of a PID 1: everything synced and unmounted or read-only, then
/// the reboot(2) call. Never returns.
pub fn final_shutdown(how: Shutdown, data_mount: Option<&Path>) -> ! {
    nix::unistd::sync();
    if let Some(m) = data_mount {
        if let Err(e) = umount2(m, MntFlags::empty()) {
            warn!("cannot unmount {}: {e}; remounting read-only", m.display());
            let _ = mount(
                None::<&str>,
                m,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            );
        }
    }
    let _ = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    );
    nix::unistd::sync();
    info!("{}", how.name());
    let mode = match how {
        Shutdown::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
        Shutdown::Poweroff => nix::sys::reboot::RebootMode::RB_POWER_OFF,
        Shutdown::Halt => nix::sys::reboot::RebootMode::RB_HALT_SYSTEM,
    };
    let Err(e) = nix::sys::reboot::reboot(mode);
    warn!("reboot(2): {e}");
    // PID 1 must not exit (the kernel would panic): wait for the power.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_table_covers_the_basics() {
        let targets: Vec<&str> = early_mounts().iter().map(|m| m.1).collect();
        assert_eq!(
            targets,
            ["/proc", "/sys", "/dev", "/dev/pts", "/run", "/tmp"]
        );
        // /dev comes before /dev/pts, which lives on it.
    }

    #[test]
    fn modules_dep_lookup() {
        let dep = "kernel/drivers/net/tun.ko: \n\
                   kernel/drivers/net/veth.ko.xz:\n\
                   kernel/net/ipv6/ip6_tunnel.ko: kernel/net/ipv6/tunnel6.ko\n";
        assert_eq!(find_module(dep, "tun"), Some("kernel/drivers/net/tun.ko"));
        assert_eq!(
            find_module(dep, "veth"),
            Some("kernel/drivers/net/veth.ko.xz")
        );
        assert_eq!(
            find_module(dep, "ip6-tunnel"),
            Some("kernel/net/ipv6/ip6_tunnel.ko")
        );
        assert_eq!(find_module(dep, "tunnel6"), None);
        assert_eq!(find_module("", "tun"), None);
    }

    #[test]
    fn stat_parent_pid() {
        assert_eq!(parent_pid("42 (sleep) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parent_pid("42 (a) b) (c) S 9 1"), Some(9));
        assert_eq!(parent_pid("42 (x"), None);
        assert_eq!(parent_pid(""), None);
    }

    #[test]
    fn finds_own_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kids = children_of(std::process::id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(kids.contains(&(child.id() as i32)), "{kids:?}");
    }
}
