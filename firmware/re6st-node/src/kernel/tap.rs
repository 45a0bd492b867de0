//! Persistent taps through the tun driver, as `ip tuntap add/del` makes
//! them: OpenVPN then opens the existing tap by name (`--dev`), and the
//! tap outlives an OpenVPN that dies.

use std::io;
use std::os::fd::AsRawFd;

/// `struct ifreq` with the tun driver's flags (40 bytes covers both the
/// 32- and 64-bit layouts).
fn ifreq(name: &str, flags: libc::c_int) -> io::Result<[u8; 40]> {
    let mut req = [0u8; 40];
    if name.is_empty() || name.len() >= libc::IF_NAMESIZE || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    req[..name.len()].copy_from_slice(name.as_bytes());
    req[16..18].copy_from_slice(&(flags as libc::c_short).to_ne_bytes());
    Ok(req)
}

/// Attaches to tap `name` (created if missing), then sets whether it
/// persists once closed.
fn set_persist(name: &str, flags: libc::c_int, persist: bool) -> io::Result<()> {
    let mut req = ifreq(name, libc::IFF_TAP | libc::IFF_NO_PI | flags)?;
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // SAFETY: the requests take a `struct ifreq` and an integer.
    unsafe {
        if libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, req.as_mut_ptr()) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(
            tun.as_raw_fd(),
            libc::TUNSETPERSIST,
            libc::c_ulong::from(persist),
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A new persistent tap; fails if any link of that name exists.
pub fn create(name: &str) -> io::Result<()> {
    set_persist(name, libc::IFF_TUN_EXCL, true)
}

/// Deletes tap `name`; a link of that name that is not a tap stays (the
/// driver refuses to attach to it).
pub fn delete(name: &str) -> io::Result<()> {
    set_persist(name, 0, false)
}
