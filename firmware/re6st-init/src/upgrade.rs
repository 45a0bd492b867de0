//! A/B slots on the disk: where they are (told by the initramfs), reading
//! and writing the boot environment, and `re6st init upgrade`: check the
//! image's signed manifest, write the inactive slot, verify it, put it on
//! trial.
//!
//! The initramfs passes the layout to init in its environment
//! (`RE6ST_SLOT`, `RE6ST_BOOTENV`, `RE6ST_SLOT_A`, `RE6ST_SLOT_B`); init
//! records it in `run/re6st-init/boot` for the `upgrade` command. Devices
//! may be regular files (tests).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::bootslot::{BootEnv, Slot, UpgradeError, COPIES, COPY_SIZE};
use crate::manifest::{ManifestError, Trust};

/// Where init records the boot layout, relative to the root.
pub const BOOT_INFO: &str = "run/re6st-init/boot";

/// Squashfs superblock: magic "hsqs" and `bytes_used` (u64 LE at 40).
const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
const SQUASHFS_BYTES_USED: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    pub booted: Slot,
    pub bootenv: PathBuf,
    pub slot_a: PathBuf,
    pub slot_b: PathBuf,
}

impl BootInfo {
    /// From init's environment (set by the initramfs); `None` without an
    /// A/B layout.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Option<BootInfo> {
        Some(BootInfo {
            booted: Slot::parse(&var("RE6ST_SLOT")?)?,
            bootenv: var("RE6ST_BOOTENV")?.into(),
            slot_a: var("RE6ST_SLOT_A")?.into(),
            slot_b: var("RE6ST_SLOT_B")?.into(),
        })
    }

    pub fn device(&self, slot: Slot) -> &Path {
        match slot {
            Slot::A => &self.slot_a,
            Slot::B => &self.slot_b,
        }
    }

    pub fn to_text(&self) -> String {
        format!(
            "booted={}\nbootenv={}\na={}\nb={}\n",
            self.booted,
            self.bootenv.display(),
            self.slot_a.display(),
            self.slot_b.display()
        )
    }

    pub fn parse(text: &str) -> Option<BootInfo> {
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
        };
        Some(BootInfo {
            booted: Slot::parse(&get("booted")?)?,
            bootenv: get("bootenv")?.into(),
            slot_a: get("a")?.into(),
            slot_b: get("b")?.into(),
        })
    }

    pub fn load(root: &Path) -> std::io::Result<Option<BootInfo>> {
        match std::fs::read_to_string(root.join(BOOT_INFO)) {
            Ok(t) => Ok(BootInfo::parse(&t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, root: &Path) -> std::io::Result<()> {
        let path = root.join(BOOT_INFO);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.to_text())
    }
}

/// The boot environment and the copy the next write goes to.
pub fn read_env(dev: &Path) -> std::io::Result<(BootEnv, usize)> {
    let mut buf = vec![0u8; COPIES * COPY_SIZE];
    let mut f = File::open(dev)?;
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(BootEnv::read(&buf[..got]))
}

/// Writes `env` into copy `index` and syncs it to the device.
pub fn write_env(dev: &Path, index: usize, env: &BootEnv) -> std::io::Result<()> {
    let f = OpenOptions::new().write(true).open(dev)?;
    f.write_all_at(&env.encode(), (index * COPY_SIZE) as u64)?;
    f.sync_all()
}

/// Writes `env` over the older copy (read again first).
pub fn store_env(dev: &Path, env: &BootEnv) -> std::io::Result<()> {
    let (_, next) = read_env(dev)?;
    write_env(dev, next, env)
}

#[derive(Debug, Error)]
pub enum UpgradeFailure {
    #[error("{0}")]
    Pending(#[from] UpgradeError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("the image ({got} bytes so far) does not fit in slot {slot} ({capacity} bytes)")]
    TooLarge { slot: Slot, got: u64, capacity: u64 },
    #[error("empty image")]
    Empty,
    #[error("image sha256 {got}, expected {want}: slot {slot} left unused")]
    Checksum {
        slot: Slot,
        got: String,
        want: String,
    },
    #[error("read back from slot {slot}: sha256 {got} differs from what was written")]
    ReadBack { slot: Slot, got: String },
    #[error("not a root filesystem image: {0}")]
    Content(String),
    #[error("{0}; nothing written")]
    Refused(ManifestError),
    #[error("{0}; slot {1} left unused")]
    Stream(ManifestError, Slot),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpgradeFailure {
    let what = what.into();
    move |e| UpgradeFailure::Io(what, e)
}

/// Size of a block device or regular file.
fn capacity(f: &mut File) -> std::io::Result<u64> {
    let end = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(end)
}

/// Checks a squashfs superblock at the head of an image of `len` bytes.
pub fn check_squashfs_header(head: &[u8], len: u64) -> Result<(), String> {
    if head.len() < SQUASHFS_BYTES_USED + 8 || &head[..4] != SQUASHFS_MAGIC {
        return Err("no squashfs superblock".into());
    }
    let mut used = [0u8; 8];
    used.copy_from_slice(&head[SQUASHFS_BYTES_USED..SQUASHFS_BYTES_USED + 8]);
    let used = u64::from_le_bytes(used);
    if used > len {
        return Err(format!(
            "truncated squashfs ({used} bytes used, {len} in the image)"
        ));
    }
    Ok(())
}

/// What the image must be: its digest, and its length when known.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    pub sha256: &'a str,
    pub length: Option<u64>,
}

/// Where the image comes from: a file is checked whole (length, digest)
/// before anything is written; a stream only as it is written.
pub enum Source<'a> {
    File(&'a Path),
    Stream(&'a mut dyn Read),
}

/// `re6st init upgrade`: checks `manifest` (signed by the key `trust`
/// holds, for our board and architecture; `pin`, if given, must be its
/// digest), and a file source's length and digest, before writing
/// anything; then [`upgrade`].
pub fn upgrade_signed(
    info: &BootInfo,
    trust: &Trust,
    manifest: &[u8],
    source: Source,
    pin: Option<&str>,
    tries: u32,
    check: &dyn Fn(&Path, u64) -> Result<(), String>,
) -> Result<Upgraded, UpgradeFailure> {
    let m = trust.check(manifest).map_err(UpgradeFailure::Refused)?;
    if let Some(pin) = pin.map(str::to_ascii_lowercase) {
        if pin != m.sha256 {
            return Err(UpgradeFailure::Refused(ManifestError::Digest {
                got: m.sha256,
                want: pin,
            }));
        }
    }
    let want = Want {
        sha256: &m.sha256,
        length: Some(m.length),
    };
    match source {
        Source::Stream(image) => upgrade(info, image, want, tries, check),
        Source::File(path) => {
            let got = std::fs::metadata(path)
                .map_err(io(path.display().to_string()))?
                .len();
            if got < m.length {
                return Err(UpgradeFailure::Refused(ManifestError::Truncated {
                    got,
                    want: m.length,
                }));
            }
            if got > m.length {
                return Err(UpgradeFailure::Refused(ManifestError::TooLong {
                    want: m.length,
                }));
            }
            let digest = sha256_of_head(path, got).map_err(io(path.display().to_string()))?;
            if digest != m.sha256 {
                return Err(UpgradeFailure::Refused(ManifestError::Digest {
                    got: digest,
                    want: m.sha256,
                }));
            }
            let mut f = File::open(path).map_err(io(path.display().to_string()))?;
            upgrade(info, &mut f, want, tries, check)
        }
    }
}

/// What [`upgrade`] did.
#[derive(Debug)]
pub struct Upgraded {
    pub slot: Slot,
    pub bytes: u64,
    pub sha256: String,
    pub env: BootEnv,
}

/// Streams `image` into the slot we did not boot from, checks its SHA-256
/// (as received, then read back from the device) and its content (a
/// squashfs, then `check` on the written device: the caller mounts it and
/// looks inside), then puts the slot on trial for `tries` boots. On any
/// failure the boot environment does not point at the slot.
pub fn upgrade(
    info: &BootInfo,
    image: &mut dyn Read,
    want: Want,
    tries: u32,
    check: &dyn Fn(&Path, u64) -> Result<(), String>,
) -> Result<Upgraded, UpgradeFailure> {
    let want_length = want.length;
    let want = want.sha256.to_ascii_lowercase();
    let (env, _) = read_env(&info.bootenv).map_err(io(info.bootenv.display().to_string()))?;
    // Refuse before touching anything.
    env.begin_trial(info.booted, tries)?;
    let slot = info.booted.other();
    let dev = info.device(slot);
    if env.trial.is_some() {
        // A trial of that slot not booted yet: it must not be booted while
        // (or after) being overwritten.
        let mut cleared = env;
        cleared.trial = None;
        cleared.seq = cleared.seq.saturating_add(1);
        store_env(&info.bootenv, &cleared).map_err(io("boot environment"))?;
    }

    let mut out = OpenOptions::new()
        .write(true)
        .open(dev)
        .map_err(io(dev.display().to_string()))?;
    let cap = capacity(&mut out).map_err(io(dev.display().to_string()))?;
    let mut hasher = openssl::sha::Sha256::new();
    let mut head = Vec::with_capacity(64);
    let mut buf = vec![0u8; 64 * 1024];
    let mut len: u64 = 0;
    loop {
        let n = match image.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(UpgradeFailure::Io("reading the image".into(), e)),
        };
        if want_length.is_some_and(|w| len + n as u64 > w) {
            return Err(UpgradeFailure::Stream(
                ManifestError::TooLong {
                    want: want_length.unwrap_or_default(),
                },
                slot,
            ));
        }
        if len + n as u64 > cap {
            return Err(UpgradeFailure::TooLarge {
                slot,
                got: len + n as u64,
                capacity: cap,
            });
        }
        if head.len() < 64 {
            let take = (64 - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io(format!("writing {}", dev.display())))?;
        len += n as u64;
    }
    out.sync_all()
        .map_err(io(format!("syncing {}", dev.display())))?;
    drop(out);
    if len == 0 {
        return Err(UpgradeFailure::Empty);
    }
    if let Some(w) = want_length.filter(|w| len < *w) {
        return Err(UpgradeFailure::Stream(
            ManifestError::Truncated { got: len, want: w },
            slot,
        ));
    }
    let got = hex::encode(hasher.finish());
    if got != want {
        return Err(UpgradeFailure::Checksum { slot, got, want });
    }
    let back = sha256_of_head(dev, len).map_err(io(format!("reading back {}", dev.display())))?;
    if back != got {
        return Err(UpgradeFailure::ReadBack { slot, got: back });
    }
    check_squashfs_header(&head, len).map_err(UpgradeFailure::Content)?;
    check(dev, len).map_err(UpgradeFailure::Content)?;

    // Read again: the environment may have been rewritten above.
    let (env, next) = read_env(&info.bootenv).map_err(io("boot environment"))?;
    let trial = env.begin_trial(info.booted, tries)?;
    write_env(&info.bootenv, next, &trial).map_err(io("writing the boot environment"))?;
    Ok(Upgraded {
        slot,
        bytes: len,
        sha256: got,
        env: trial,
    })
}

/// On the router: mounts the written slot read-only and checks that it
/// can boot with the running kernel (which the upgrade does not replace):
/// it has `/sbin/init` and modules for this kernel release.
pub fn mount_check(dev: &Path, _len: u64) -> Result<(), String> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let dir = Path::new("/run/re6st-upgrade-check");
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    mount(
        Some(dev),
        dir,
        Some("squashfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
        None::<&str>,
    )
    .map_err(|e| format!("cannot mount {} as squashfs: {e}", dev.display()))?;
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let verdict = if std::fs::symlink_metadata(dir.join("sbin/init")).is_err() {
        Err("the image has no /sbin/init".to_owned())
    } else if !dir.join("lib/modules").join(&release).is_dir() {
        Err(format!(
            "the image has no modules for the running kernel {release} (kernels are not upgraded with the root filesystem)"
        ))
    } else {
        Ok(())
    };
    let _ = umount2(dir, MntFlags::MNT_DETACH);
    verdict
}

fn sha256_of_head(dev: &Path, len: u64) -> std::io::Result<String> {
    let mut f = File::open(dev)?.take(len);
    let mut hasher = openssl::sha::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    if total != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("only {total} of {len} bytes"),
        ));
    }
    Ok(hex::encode(hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Disk {
        _dir: tempfile::TempDir,
        info: BootInfo,
    }

    fn disk(booted: Slot, slot_size: usize) -> Disk {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("env"), vec![0u8; 2 * COPY_SIZE]).unwrap();
        std::fs::write(p("a"), vec![0u8; slot_size]).unwrap();
        std::fs::write(p("b"), vec![0u8; slot_size]).unwrap();
        let info = BootInfo {
            booted,
            bootenv: p("env"),
            slot_a: p("a"),
            slot_b: p("b"),
        };
        Disk { _dir: dir, info }
    }

    fn squashfs_like(len: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        v[..4].copy_from_slice(b"hsqs");
        v[40..48].copy_from_slice(&(len as u64).to_le_bytes());
        v
    }

    fn sha(v: &[u8]) -> String {
        hex::encode(openssl::sha::sha256(v))
    }

    fn ok(_: &Path, _: u64) -> Result<(), String> {
        Ok(())
    }

    /// A digest to match, no length (as with `--sha256` alone).
    fn unsized_want(sha256: &str) -> Want<'_> {
        Want {
            sha256,
            length: None,
        }
    }

    #[test]
    fn boot_info_round_trips_and_needs_every_variable() {
        let d = disk(Slot::B, 10);
        assert_eq!(BootInfo::parse(&d.info.to_text()), Some(d.info.clone()));
        let vars = |k: &str| match k {
            "RE6ST_SLOT" => Some("b".to_owned()),
            "RE6ST_BOOTENV" => Some("/dev/vda1".to_owned()),
            "RE6ST_SLOT_A" => Some("/dev/vda2".to_owned()),
            "RE6ST_SLOT_B" => Some("/dev/vda3".to_owned()),
            _ => None,
        };
        let info = BootInfo::from_vars(vars).unwrap();
        assert_eq!(info.device(Slot::B), Path::new("/dev/vda3"));
        assert_eq!(
            BootInfo::from_vars(|k| vars(k).filter(|_| k != "RE6ST_SLOT_B")),
            None
        );
        assert_eq!(
            BootInfo::from_vars(|k| if k == "RE6ST_SLOT" {
                Some("c".into())
            } else {
                vars(k)
            }),
            None
        );
    }

    #[test]
    fn an_upgrade_writes_the_other_slot_and_puts_it_on_trial() {
        let d = disk(Slot::A, 1 << 20);
        let img = squashfs_like(300_000);
        let up = upgrade(&d.info, &mut &img[..], unsized_want(&sha(&img)), 1, &ok).unwrap();
        assert_eq!((up.slot, up.bytes), (Slot::B, img.len() as u64));
        assert_eq!(
            &std::fs::read(&d.info.slot_b).unwrap()[..img.len()],
            &img[..]
        );
        assert!(std::fs::read(&d.info.slot_a)
            .unwrap()
            .iter()
            .all(|&b| b == 0));
        let (env, _) = read_env(&d.info.bootenv).unwrap();
        assert!(env.on_trial(Slot::B));
        assert_eq!(env.active, Slot::A);
        // The initramfs then boots b once; init confirms it.
        let (slot, next) = env.boot();
        assert_eq!(slot, Slot::B);
        store_env(&d.info.bootenv, &next.unwrap()).unwrap();
        let (env, _) = read_env(&d.info.bootenv).unwrap();
        store_env(&d.info.bootenv, &env.confirm(Slot::B).unwrap()).unwrap();
        assert_eq!(read_env(&d.info.bootenv).unwrap().0.boot(), (Slot::B, None));
    }

    #[test]
    fn bad_images_never_get_booted() {
        let d = disk(Slot::A, 1 << 16);
        let img = squashfs_like(40_000);
        let untouched = |d: &Disk| {
            let (env, _) = read_env(&d.info.bootenv).unwrap();
            assert_eq!(env.trial, None);
            assert_eq!(env.boot().0, Slot::A);
        };
        let e = upgrade(
            &d.info,
            &mut &img[..],
            unsized_want(&"0".repeat(64)),
            1,
            &ok,
        )
        .unwrap_err();
        assert!(matches!(e, UpgradeFailure::Checksum { .. }), "{e}");
        untouched(&d);
        let big = squashfs_like(70_000);
        let e = upgrade(&d.info, &mut &big[..], unsized_want(&sha(&big)), 1, &ok).unwrap_err();
        assert!(matches!(e, UpgradeFailure::TooLarge { .. }), "{e}");
        untouched(&d);
        let mut not_fs = img.clone();
        not_fs[0] = b'x';
        let e = upgrade(
            &d.info,
            &mut &not_fs[..],
            unsized_want(&sha(&not_fs)),
            1,
            &ok,
        )
        .unwrap_err();
        assert!(matches!(e, UpgradeFailure::Content(_)), "{e}");
        untouched(&d);
        let e = upgrade(
            &d.info,
            &mut &img[..],
            unsized_want(&sha(&img)),
            1,
            &|_: &Path, _| Err("no /sbin/init".into()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no /sbin/init"));
        untouched(&d);
        let e = upgrade(&d.info, &mut &b""[..], unsized_want(&sha(b"")), 1, &ok).unwrap_err();
        assert!(matches!(e, UpgradeFailure::Empty));
        untouched(&d);
    }

    #[test]
    fn no_upgrade_while_a_trial_is_unconfirmed() {
        let d = disk(Slot::B, 1 << 16);
        let env = BootEnv::default().begin_trial(Slot::A, 1).unwrap();
        store_env(&d.info.bootenv, &env).unwrap();
        let img = squashfs_like(1000);
        let e = upgrade(&d.info, &mut &img[..], unsized_want(&sha(&img)), 1, &ok).unwrap_err();
        assert!(
            matches!(
                e,
                UpgradeFailure::Pending(UpgradeError::TrialPending { .. })
            ),
            "{e}"
        );
        // Nothing written to a (the slot we run from).
        assert!(std::fs::read(&d.info.slot_a)
            .unwrap()
            .iter()
            .all(|&b| b == 0));
    }

    #[test]
    fn a_pending_trial_of_the_target_is_withdrawn_before_writing() {
        let d = disk(Slot::A, 1 << 16);
        let env = BootEnv::default().begin_trial(Slot::A, 1).unwrap();
        store_env(&d.info.bootenv, &env).unwrap();
        let img = squashfs_like(1000);
        // The write fails half-way (reader error): b must not stay on trial.
        struct Failing<'a>(&'a [u8], bool);
        impl Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.1 {
                    return Err(std::io::Error::other("connection reset"));
                }
                self.1 = true;
                let n = buf.len().min(self.0.len() / 2);
                buf[..n].copy_from_slice(&self.0[..n]);
                Ok(n)
            }
        }
        let e = upgrade(
            &d.info,
            &mut Failing(&img, false),
            unsized_want(&sha(&img)),
            1,
            &ok,
        )
        .unwrap_err();
        assert!(e.to_string().contains("connection reset"));
        assert_eq!(read_env(&d.info.bootenv).unwrap().0.trial, None);
    }

    mod signed {
        use super::*;
        use crate::manifest::{body, sign, test_key, Trust};

        /// A disk, the trust of the image running on it and a good image
        /// written to a file with its signed manifest.
        fn setup() -> (
            Disk,
            Trust,
            openssl::pkey::PKey<openssl::pkey::Private>,
            Vec<u8>,
        ) {
            let d = disk(Slot::A, 1 << 16);
            let (key, pem) = test_key();
            let trust = Trust::new("qemu-x86_64", "amd64", &pem).unwrap();
            (d, trust, key, squashfs_like(40_000))
        }

        /// Every byte of the disk as it was before (slot b blank, boot
        /// environment blank).
        fn nothing_written(d: &Disk) {
            for p in [&d.info.slot_a, &d.info.slot_b, &d.info.bootenv] {
                assert!(
                    std::fs::read(p).unwrap().iter().all(|&b| b == 0),
                    "{} written",
                    p.display()
                );
            }
        }

        fn file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
            let p = dir.join(name);
            std::fs::write(&p, data).unwrap();
            p
        }

        #[test]
        fn a_signed_image_for_this_board_is_written_and_put_on_trial() {
            let (d, trust, key, img) = setup();
            let m = sign(&body("qemu-x86_64", "amd64", &img, &trust.key_id), &key);
            let f = file(d._dir.path(), "img", &img);
            let up = upgrade_signed(
                &d.info,
                &trust,
                m.as_bytes(),
                Source::File(&f),
                None,
                1,
                &ok,
            )
            .unwrap();
            assert_eq!((up.slot, up.bytes), (Slot::B, img.len() as u64));
            assert!(read_env(&d.info.bootenv).unwrap().0.on_trial(Slot::B));
            // The same from a stream.
            let d2 = disk(Slot::A, 1 << 16);
            let up = upgrade_signed(
                &d2.info,
                &trust,
                m.as_bytes(),
                Source::Stream(&mut &img[..]),
                Some(&sha(&img)),
                1,
                &ok,
            )
            .unwrap();
            assert_eq!(up.sha256, sha(&img));
        }

        #[test]
        fn foreign_truncated_unsigned_or_other_keys_images_are_refused_before_writing() {
            let (d, trust, key, img) = setup();
            let dir = d._dir.path();
            let f = file(dir, "img", &img);
            let refused = |manifest: &str, src: &Path, what: &str| {
                let e = upgrade_signed(
                    &d.info,
                    &trust,
                    manifest.as_bytes(),
                    Source::File(src),
                    None,
                    1,
                    &ok,
                )
                .unwrap_err();
                assert!(matches!(e, UpgradeFailure::Refused(_)), "{what}: {e}");
                assert!(e.to_string().ends_with("nothing written"), "{e}");
                nothing_written(&d);
                e.to_string()
            };
            let foreign = sign(
                &body("qemu-aarch64-virt", "arm64", &img, &trust.key_id),
                &key,
            );
            let e = refused(&foreign, &f, "foreign board");
            assert!(e.contains("board qemu-aarch64-virt"), "{e}");
            let foreign = sign(&body("qemu-x86_64", "mipsel", &img, &trust.key_id), &key);
            let e = refused(&foreign, &f, "foreign arch");
            assert!(e.contains("architecture mipsel"), "{e}");
            let good = sign(&body("qemu-x86_64", "amd64", &img, &trust.key_id), &key);
            let short = file(dir, "short", &img[..img.len() - 4096]);
            let e = refused(&good, &short, "truncated");
            assert!(e.contains("truncated image: 35904 bytes"), "{e}");
            let mut altered = img.clone();
            altered[30_000] ^= 1;
            let altered = file(dir, "altered", &altered);
            let e = refused(&good, &altered, "altered");
            assert!(e.contains("its signed manifest says"), "{e}");
            let unsigned = body("qemu-x86_64", "amd64", &img, &trust.key_id);
            let e = refused(&unsigned, &f, "unsigned");
            assert!(e.starts_with("unsigned image"), "{e}");
            let (other, _) = test_key();
            let e = refused(
                &sign(
                    &body("qemu-x86_64", "amd64", &img, "0123456789abcdef"),
                    &other,
                ),
                &f,
                "other key",
            );
            assert!(e.contains("signed by another key"), "{e}");
            assert!(e.contains("manifest names key 0123456789abcdef"), "{e}");
            // A pinned digest that is not the manifest's.
            let e = upgrade_signed(
                &d.info,
                &trust,
                good.as_bytes(),
                Source::File(&f),
                Some(&"0".repeat(64)),
                1,
                &ok,
            )
            .unwrap_err();
            assert!(matches!(e, UpgradeFailure::Refused(_)), "{e}");
            nothing_written(&d);
        }

        #[test]
        fn a_truncated_stream_is_never_put_on_trial() {
            let (d, trust, key, img) = setup();
            let good = sign(&body("qemu-x86_64", "amd64", &img, &trust.key_id), &key);
            for data in [&img[..img.len() - 1], &[&img[..], b"more"].concat()[..]] {
                let e = upgrade_signed(
                    &d.info,
                    &trust,
                    good.as_bytes(),
                    Source::Stream(&mut &data[..]),
                    None,
                    1,
                    &ok,
                )
                .unwrap_err();
                assert!(matches!(e, UpgradeFailure::Stream(..)), "{e}");
                let (env, _) = read_env(&d.info.bootenv).unwrap();
                assert_eq!((env.trial, env.boot().0), (None, Slot::A));
                // The slot we run from is untouched.
                assert!(std::fs::read(&d.info.slot_a)
                    .unwrap()
                    .iter()
                    .all(|&b| b == 0));
            }
        }
    }

    #[test]
    fn squashfs_headers() {
        let img = squashfs_like(100);
        assert_eq!(check_squashfs_header(&img[..64], 100), Ok(()));
        assert!(check_squashfs_header(&img[..64], 99)
            .unwrap_err()
            .contains("truncated"));
        assert!(check_squashfs_header(&img[..10], 100).is_err());
    }
}
