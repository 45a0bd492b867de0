//! Where init finds and puts things, below a root directory: `/` on a
//! router, a scratch directory in tests (`--root`).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    /// PID 1 of a real system, root `/`: mounts, clock, reboot allowed.
    pub system: bool,
}

impl Layout {
    /// `abs` (an absolute path on the router) below the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    pub fn cmdline(&self) -> PathBuf {
        self.path("/proc/cmdline")
    }

    pub fn fw_cfg(&self) -> PathBuf {
        self.path("/sys/firmware/qemu_fw_cfg/by_name/opt/re6st/profile/raw")
    }

    pub fn board_defaults(&self) -> PathBuf {
        self.path("/etc/re6st/profile")
    }

    /// Mount point of the data partition (an empty directory in the image).
    pub fn data_mount(&self) -> PathBuf {
        self.path("/data")
    }

    /// Where data goes when no partition is usable: RAM.
    pub fn volatile_data(&self) -> PathBuf {
        self.path("/run/re6st-data")
    }

    /// Where a config partition is mounted, read-only, while it is read.
    pub fn config_mount(&self) -> PathBuf {
        self.path("/run/re6st-config")
    }

    pub fn resolv_conf(&self) -> PathBuf {
        self.path("/run/resolv.conf")
    }

    pub fn control_socket(&self) -> PathBuf {
        crate::control::socket_path(&self.root)
    }

    /// Root-relative path of a file given by the profile.
    pub fn rooted(&self, p: &Path) -> PathBuf {
        self.path(&p.to_string_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_below_the_root() {
        let l = Layout {
            root: "/tmp/t".into(),
            system: false,
        };
        assert_eq!(l.cmdline(), Path::new("/tmp/t/proc/cmdline"));
        assert_eq!(l.board_defaults(), Path::new("/tmp/t/etc/re6st/profile"));
        assert_eq!(
            l.rooted(Path::new("/boot/profile")),
            Path::new("/tmp/t/boot/profile")
        );
        assert_eq!(
            l.control_socket(),
            Path::new("/tmp/t/run/re6st-init/control")
        );
        let sys = Layout {
            root: "/".into(),
            system: true,
        };
        assert_eq!(sys.data_mount(), Path::new("/data"));
    }
}
