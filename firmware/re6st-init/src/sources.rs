//! Reading the profile's sources: kernel command line, QEMU fw_cfg, the
//! config partition (or file), the board defaults. A source that doesn't
//! parse is left out with a warning; a merged profile that doesn't
//! validate falls back to fewer sources, lowest priority kept longest, and
//! finally to the minimal default profile: the router always boots.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::layout::Layout;
use crate::profile::{parse_cmdline, parse_file, resolve, Layer, Profile, Source};

/// The profile file's name at the root of a config partition.
pub const CONFIG_PARTITION_FILE: &str = "re6st-profile";

/// Profiles are small; anything bigger is not one.
const MAX_SOURCE: u64 = 64 * 1024;

fn read_text(path: &Path) -> Option<Result<String, String>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    let mut data = Vec::new();
    if let Err(e) = file.take(MAX_SOURCE + 1).read_to_end(&mut data) {
        return Some(Err(e.to_string()));
    }
    if data.len() as u64 > MAX_SOURCE {
        return Some(Err(format!("larger than {MAX_SOURCE} bytes")));
    }
    Some(String::from_utf8(data).map_err(|_| "not UTF-8 text".to_owned()))
}

fn parse_source(source: Source, path: &Path) -> Option<Layer> {
    let text = match read_text(path)? {
        Ok(t) => t,
        Err(e) => {
            warn!("{source} {}: {e}", path.display());
            return None;
        }
    };
    let parsed = match source {
        Source::KernelCmdline => parse_cmdline(&text),
        _ => parse_file(source, &text),
    };
    match parsed {
        Ok(l) => Some(l),
        Err(e) => {
            warn!("ignoring {source} ({}): {e}", path.display());
            None
        }
    }
}

fn is_block_device(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
}

/// Reads the config partition's profile: mounted read-only just long
/// enough (real system), or a plain file.
fn read_config(layout: &Layout, config: &Path) -> Option<Layer> {
    let path = layout.rooted(config);
    if !(layout.system && is_block_device(&path)) {
        return parse_source(Source::ConfigPartition, &path);
    }
    use nix::mount::{mount, umount, MsFlags};
    let mnt = layout.config_mount();
    let _ = std::fs::create_dir_all(&mnt);
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mounted = ["vfat", "ext4"]
        .iter()
        .any(|fs| mount(Some(&path), &mnt, Some(*fs), flags, None::<&str>).is_ok());
    if !mounted {
        warn!("cannot mount config partition {}", path.display());
        return None;
    }
    let layer = parse_source(Source::ConfigPartition, &mnt.join(CONFIG_PARTITION_FILE));
    if let Err(e) = umount(&mnt) {
        warn!("cannot unmount config partition: {e}");
    }
    layer
}

/// The first of `layers` (in priority order) that sets `key`.
fn first_value(layers: &[Layer], key: &str) -> Option<PathBuf> {
    let mut sorted: Vec<&Layer> = layers.iter().collect();
    sorted.sort_by_key(|l| l.source);
    sorted
        .iter()
        .find_map(|l| l.get(key))
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
}

/// Merges and validates, dropping the highest-priority layer on failure
/// until something validates.
pub fn resolve_with_fallback(mut layers: Vec<Layer>) -> Profile {
    layers.sort_by_key(|l| l.source);
    for skip in 0..=layers.len() {
        let kept = layers.get(skip..).unwrap_or_default();
        match resolve(kept) {
            Ok(p) => {
                if skip > 0 {
                    warn!("profile: left out {skip} source(s) to get a valid profile");
                }
                return p;
            }
            Err(e) => warn!("profile: {e}"),
        }
    }
    Profile::default()
}

/// Reads every source below the layout's root and returns the profile.
pub fn load(layout: &Layout) -> Profile {
    let mut layers: Vec<Layer> = [
        (Source::KernelCmdline, layout.cmdline()),
        (Source::FwCfg, layout.fw_cfg()),
        (Source::BoardDefaults, layout.board_defaults()),
    ]
    .into_iter()
    .filter_map(|(source, path)| parse_source(source, &path))
    .collect();
    if let Some(config) = first_value(&layers, "config") {
        layers.extend(read_config(layout, &config));
    }
    let found: Vec<String> = layers.iter().map(|l| l.source.to_string()).collect();
    info!("profile sources: {}", found.join(", "));
    resolve_with_fallback(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Root(PathBuf);
    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn root(tag: &str, files: &[(&str, &str)]) -> (Root, Layout) {
        let dir = std::env::temp_dir().join(format!("re6st-init-src-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let layout = Layout {
            root: dir.clone(),
            system: false,
        };
        (Root(dir), layout)
    }

    #[test]
    fn all_sources_in_priority_order() {
        let (_r, layout) = root(
            "all",
            &[
                ("proc/cmdline", "quiet re6st.hostname=from-cmdline\n"),
                (
                    "sys/firmware/qemu_fw_cfg/by_name/opt/re6st/profile/raw",
                    "hostname=from-fwcfg\nlan=fw0\n",
                ),
                (
                    "etc/re6st/profile",
                    "hostname=board\nlan=eth1\nwan=eth0\nconfig=/boot/p\n",
                ),
                ("boot/p", "wan=cfg0\nlan=cfg1\n"),
            ],
        );
        let p = load(&layout);
        assert_eq!(p.hostname, "from-cmdline");
        assert_eq!(p.lan.as_deref(), Some("fw0"));
        assert_eq!(p.wan.unwrap().interface, "cfg0");
    }

    #[test]
    fn a_broken_source_is_left_out() {
        let (_r, layout) = root(
            "broken",
            &[
                ("proc/cmdline", "re6st.hostname=\"unterminated\n"),
                ("etc/re6st/profile", "hostname=board\n"),
            ],
        );
        assert_eq!(load(&layout).hostname, "board");
    }

    #[test]
    fn invalid_merge_falls_back_to_lower_sources() {
        let (_r, layout) = root(
            "invalid",
            &[
                // Parses, but a registry without fingerprint doesn't validate.
                (
                    "proc/cmdline",
                    "re6st.registry=http://r/ re6st.hostname=cmd",
                ),
                ("etc/re6st/profile", "hostname=board\n"),
            ],
        );
        assert_eq!(load(&layout).hostname, "board");
    }

    #[test]
    fn nothing_at_all_gives_the_default() {
        let (_r, layout) = root("none", &[]);
        assert_eq!(load(&layout), Profile::default());
        let (_r, layout) = root("bad-board", &[("etc/re6st/profile", "hostname=-x-\n")]);
        assert_eq!(load(&layout), Profile::default());
    }

    #[test]
    fn oversized_or_binary_sources_are_refused() {
        let big = "#".repeat(70_000);
        let (_r, layout) = root("big", &[("etc/re6st/profile", &big)]);
        assert!(read_text(&layout.board_defaults()).unwrap().is_err());
        std::fs::write(layout.board_defaults(), b"\xff\xfe").unwrap();
        assert!(read_text(&layout.board_defaults()).unwrap().is_err());
        assert!(read_text(&layout.cmdline()).is_none());
    }
}
