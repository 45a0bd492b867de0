//! Carries out the data partition plan of [`crate::datapart`]: probing,
//! e2fsck, mkfs, mount, reading and wiping the state.

use std::io::Read;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use openssl::pkey::PKey;
use openssl::x509::X509;
use tracing::{info, warn};

use crate::datapart::{
    classify, identify, layout, DataPlan, Event, FileState, FsckOutcome, Medium, StateListing,
    Step, PROBE_LEN,
};
use crate::layout::Layout;
use crate::proc::{find_program, run};
use crate::profile::Profile;

/// The data directory init ended up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    pub path: PathBuf,
    /// False: RAM only, lost at reboot.
    pub persistent: bool,
    /// Mount point to unmount at shutdown.
    pub mounted: Option<PathBuf>,
}

impl DataDir {
    /// Where provisioning writes the node's identity.
    pub fn identity(&self) -> PathBuf {
        self.path.join(layout::IDENTITY_DIR)
    }

    pub fn clock_file(&self) -> PathBuf {
        self.path.join(layout::CLOCK)
    }
}

fn file_state(path: &Path, valid: impl Fn(&[u8]) -> bool) -> FileState {
    match std::fs::read(path) {
        Ok(data) if valid(&data) => FileState::Valid,
        Ok(_) => FileState::Invalid,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileState::Absent,
        Err(_) => FileState::Invalid,
    }
}

/// Looks at what the data directory holds.
pub fn read_state(dir: &Path) -> StateListing {
    let marker = std::fs::read(dir.join(layout::MARKER)).ok();
    let has_other_entries = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            name != layout::MARKER && name != layout::LOST_FOUND
        })
    });
    let id = dir.join(layout::IDENTITY_DIR);
    let cert_ok = |d: &[u8]| X509::from_pem(d).is_ok();
    StateListing {
        marker,
        has_other_entries,
        ca: file_state(&id.join(re6st_conf::request::CA_FILE), cert_ok),
        key: file_state(&id.join(re6st_conf::request::KEY_FILE), |d| {
            PKey::private_key_from_pem(d).is_ok()
        }),
        cert: file_state(&id.join(re6st_conf::request::CERT_FILE), cert_ok),
    }
}

/// Removes everything but `lost+found`.
pub fn wipe(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == layout::LOST_FOUND {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Writes the marker (and the identity directory), synced.
pub fn initialize(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir.join(layout::IDENTITY_DIR))?;
    let tmp = dir.join(format!("{}.tmp", layout::MARKER));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(layout::MARKER_CONTENT.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(layout::MARKER))
}

fn probe(device: &Path) -> Event {
    let mut head = Vec::with_capacity(PROBE_LEN);
    let read =
        std::fs::File::open(device).and_then(|f| f.take(PROBE_LEN as u64).read_to_end(&mut head));
    if let Err(e) = read {
        warn!("cannot read {}: {e}", device.display());
    }
    Event::Identified(identify(&head))
}

fn fsck(device: &Path) -> Event {
    let dev = device.to_string_lossy();
    let code = match find_program("e2fsck").or_else(|| find_program("fsck.ext4")) {
        Some(tool) => run(&tool, &["-p", &dev]).ok(),
        None => {
            warn!("no e2fsck in the image: data partition not checked");
            None
        }
    };
    Event::Checked(FsckOutcome::from_exit_code(code))
}

fn format(device: &Path, mount_point: &Path) -> Event {
    let _ = umount2(mount_point, MntFlags::MNT_DETACH);
    let dev = device.to_string_lossy();
    let attempts: [(&str, &[&str]); 2] = [
        ("mkfs.ext4", &["-q", "-F", "-L", "re6st-data"]),
        // busybox: ext2, which the ext4 driver mounts.
        ("mke2fs", &["-L", "re6st-data"]),
    ];
    for (tool, args) in attempts {
        let Some(path) = find_program(tool) else {
            continue;
        };
        let mut argv: Vec<&str> = args.to_vec();
        argv.push(&dev);
        match run(&path, &argv) {
            Ok(0) => return Event::Formatted { ok: true },
            Ok(code) => warn!("{tool} failed ({code})"),
            Err(e) => warn!("{tool}: {e}"),
        }
    }
    Event::Formatted { ok: false }
}

fn mount_data(device: &Path, mount_point: &Path) -> Event {
    let flags = MsFlags::MS_NOATIME | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let _ = std::fs::create_dir_all(mount_point);
    let ok = match mount(Some(device), mount_point, Some("ext4"), flags, None::<&str>) {
        Ok(()) => true,
        Err(e) => {
            warn!("cannot mount {}: {e}", device.display());
            false
        }
    };
    Event::Mounted { ok }
}

/// Runs the plan to its end and returns the data directory to use.
pub fn prepare(layout: &Layout, profile: &Profile) -> DataDir {
    let (medium, device) = match (&profile.data_device, layout.system) {
        (Some(dev), true) => (Medium::Device, dev.clone()),
        (_, true) => (Medium::None, PathBuf::new()),
        (_, false) => {
            // Tests and ordinary hosts: the directory under the root.
            let _ = std::fs::create_dir_all(layout.data_mount());
            (Medium::Directory, PathBuf::new())
        }
    };
    let dir = layout.data_mount();
    let mut mounted = false;
    let (mut plan, mut step) = DataPlan::new(medium);
    loop {
        info!("data partition: {step:?}");
        let event = match step {
            Step::Identify => probe(&device),
            Step::Fsck => fsck(&device),
            Step::Format(_) => {
                mounted = false;
                format(&device, &dir)
            }
            Step::Mount => {
                let e = mount_data(&device, &dir);
                mounted = e == Event::Mounted { ok: true };
                e
            }
            Step::ReadState => Event::StateRead(classify(&read_state(&dir))),
            Step::Wipe => {
                let result = wipe(&dir);
                if let Err(e) = &result {
                    warn!("cannot wipe {}: {e}", dir.display());
                }
                Event::Wiped { ok: result.is_ok() }
            }
            Step::Ready { initialize: init } => {
                if init {
                    if let Err(e) = initialize(&dir) {
                        warn!("cannot initialize {}: {e}", dir.display());
                    }
                }
                return DataDir {
                    path: dir.clone(),
                    persistent: true,
                    mounted: mounted.then_some(dir),
                };
            }
            Step::Volatile(reason) => {
                warn!("no persistent storage ({reason:?}): state lives in RAM until reboot");
                if mounted {
                    let _ = umount2(&dir, MntFlags::MNT_DETACH);
                }
                let ram = layout.volatile_data();
                let _ = wipe(&ram);
                if let Err(e) = initialize(&ram) {
                    warn!("cannot initialize {}: {e}", ram.display());
                }
                return DataDir {
                    path: ram,
                    persistent: false,
                    mounted: None,
                };
            }
        };
        step = plan.next(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapart::StateHealth;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(tag: &str) -> (Dir, Layout) {
        let root = std::env::temp_dir().join(format!("re6st-init-dp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        (
            Dir(root.clone()),
            Layout {
                root,
                system: false,
            },
        )
    }

    #[test]
    fn first_run_initializes_the_directory() {
        let (_d, layout) = scratch("first");
        let data = prepare(&layout, &Profile::default());
        assert_eq!(data.path, layout.data_mount());
        assert!(data.persistent);
        assert_eq!(data.mounted, None);
        assert_eq!(classify(&read_state(&data.path)), StateHealth::Intact);
        assert!(data.identity().is_dir());
    }

    #[test]
    fn valid_identity_is_kept() {
        let (_d, layout) = scratch("keep");
        let data = prepare(&layout, &Profile::default());
        let pki = re6st_testkit::Pki::new("2001:db8::/32");
        let node = pki.node("1/16", 7);
        std::fs::write(data.identity().join("ca.crt"), pki.ca_pem()).unwrap();
        std::fs::write(data.identity().join("cert.crt"), node.cert_pem()).unwrap();
        std::fs::write(data.identity().join("cert.key"), node.key_pem()).unwrap();
        std::fs::write(data.clock_file(), "1700000000\n").unwrap();
        let listing = read_state(&data.path);
        assert_eq!(
            (listing.ca, listing.key, listing.cert),
            (FileState::Valid, FileState::Valid, FileState::Valid)
        );
        let again = prepare(&layout, &Profile::default());
        assert_eq!(again, data);
        assert!(again.identity().join("cert.crt").exists());
        assert!(again.clock_file().exists());
    }

    #[test]
    fn corrupt_identity_is_wiped() {
        let (_d, layout) = scratch("corrupt");
        let data = prepare(&layout, &Profile::default());
        std::fs::write(data.identity().join("cert.crt"), "garbage").unwrap();
        std::fs::write(data.identity().join("cert.key"), "garbage").unwrap();
        std::fs::create_dir_all(data.path.join(layout::LOST_FOUND)).unwrap();
        std::fs::write(data.path.join(layout::LOST_FOUND).join("x"), "kept").unwrap();
        let again = prepare(&layout, &Profile::default());
        assert!(again.persistent);
        assert!(!again.identity().join("cert.crt").exists());
        assert!(again.identity().is_dir());
        assert!(again.path.join("lost+found/x").exists());
        assert_eq!(classify(&read_state(&again.path)), StateHealth::Intact);
    }

    /// The device steps on an image file (mounting needs a loop device,
    /// which tests don't have): probe, mkfs, probe again, e2fsck.
    #[test]
    fn device_steps_on_an_image_file() {
        use crate::datapart::Signature;
        let (_d, layout) = scratch("image");
        let image = layout.root.join("data.img");
        std::fs::write(&image, vec![0u8; 8 << 20]).unwrap();
        assert_eq!(probe(&image), Event::Identified(Signature::Blank));
        assert_eq!(fsck(&image), Event::Checked(FsckOutcome::NotChecked));
        assert_eq!(
            format(&image, &layout.data_mount()),
            Event::Formatted { ok: true }
        );
        assert_eq!(probe(&image), Event::Identified(Signature::Ext));
        assert_eq!(fsck(&image), Event::Checked(FsckOutcome::Clean));
        std::fs::write(&image, b"short").unwrap();
        assert_eq!(probe(&image), Event::Identified(Signature::Other));
        assert_eq!(
            probe(&layout.root.join("missing")),
            Event::Identified(Signature::Other)
        );
    }

    #[test]
    fn unknown_content_is_wiped() {
        let (_d, layout) = scratch("unknown");
        std::fs::create_dir_all(layout.data_mount().join("old-firmware")).unwrap();
        std::fs::write(layout.data_mount().join("old-firmware/db"), "x").unwrap();
        let data = prepare(&layout, &Profile::default());
        assert!(!data.path.join("old-firmware").exists());
        assert_eq!(
            std::fs::read_to_string(data.path.join(layout::MARKER)).unwrap(),
            layout::MARKER_CONTENT
        );
    }
}
