//! What to do with the data partition at boot, decided without touching
//! it: the caller performs each [`Step`] and reports what happened as an
//! [`Event`].
//!
//! The root filesystem is read-only; everything a router keeps across
//! reboots (identity, saved clock) lives on the data partition. Whatever
//! state that partition is in, the router must come up: a blank partition
//! is formatted, a corrupt one is reformatted, unreadable state is wiped
//! (so the router provisions itself afresh), and if even formatting fails
//! the router runs with volatile state in RAM.

/// Layout of the data partition, relative to its mount point.
pub mod layout {
    /// Marks a data partition initialized by this init, with its layout
    /// version. Anything else means "unknown state".
    pub const MARKER: &str = "re6st-state";
    pub const MARKER_CONTENT: &str = "re6st-init data 1\n";
    /// Identity and configuration written by provisioning.
    pub const IDENTITY_DIR: &str = "re6st";
    /// Last known wall-clock time.
    pub const CLOCK: &str = "clock";
    /// Created by mkfs.ext4; not ours to judge.
    pub const LOST_FOUND: &str = "lost+found";
}

/// What the first sectors of the device show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// All zeros or all ones (erased flash): never formatted.
    Blank,
    /// An ext2/3/4 superblock.
    Ext,
    /// Something else: another filesystem or garbage.
    Other,
}

/// Bytes of the device to read for [`identify`].
pub const PROBE_LEN: usize = 2048;

/// Offset of the ext superblock's `s_magic` (superblock at 1024, magic at 56).
const EXT_MAGIC_OFFSET: usize = 1024 + 56;
const EXT_MAGIC: [u8; 2] = [0x53, 0xEF];

/// Identifies the content from the first [`PROBE_LEN`] bytes (fewer for a
/// tiny or unreadable device).
pub fn identify(head: &[u8]) -> Signature {
    if head.get(EXT_MAGIC_OFFSET..EXT_MAGIC_OFFSET + 2) == Some(&EXT_MAGIC[..]) {
        return Signature::Ext;
    }
    if head.len() >= PROBE_LEN && (head.iter().all(|b| *b == 0) || head.iter().all(|b| *b == 0xff))
    {
        return Signature::Blank;
    }
    Signature::Other
}

/// How `e2fsck -p` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsckOutcome {
    Clean,
    Repaired,
    /// Errors left uncorrected: the filesystem cannot be trusted.
    Uncorrectable,
    /// e2fsck missing, killed, or failing on its own (usage, cancelled,
    /// operational error): says nothing about the filesystem.
    NotChecked,
}

impl FsckOutcome {
    /// From e2fsck's exit status bits (`None`: not run or killed).
    pub fn from_exit_code(code: Option<i32>) -> Self {
        match code {
            Some(0) => FsckOutcome::Clean,
            Some(c) if c & 4 != 0 => FsckOutcome::Uncorrectable,
            Some(c) if c & !3 == 0 => FsckOutcome::Repaired,
            _ => FsckOutcome::NotChecked,
        }
    }
}

/// Whether a file holding part of the identity is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Absent,
    Valid,
    /// Present but unreadable or unparsable.
    Invalid,
}

/// What the mounted partition holds, as gathered by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateListing {
    /// Content of [`layout::MARKER`], if readable.
    pub marker: Option<Vec<u8>>,
    /// Whether entries other than the marker and `lost+found` exist.
    pub has_other_entries: bool,
    pub ca: FileState,
    pub key: FileState,
    pub cert: FileState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateHealth {
    /// Nothing there yet: initialize it.
    Empty,
    /// Ours and usable (provisioned or not).
    Intact,
    /// Unknown layout or damaged identity: wipe and provision afresh.
    Corrupt,
}

pub fn classify(listing: &StateListing) -> StateHealth {
    match &listing.marker {
        None if !listing.has_other_entries => StateHealth::Empty,
        None => StateHealth::Corrupt,
        Some(m) if m != layout::MARKER_CONTENT.as_bytes() => StateHealth::Corrupt,
        Some(_) => {
            let files = [listing.ca, listing.key, listing.cert];
            // A certificate without its key is useless; a key without a
            // certificate is what an interrupted provisioning leaves, and
            // provisioning reuses it.
            if files.contains(&FileState::Invalid)
                || (listing.cert == FileState::Valid && listing.key == FileState::Absent)
            {
                StateHealth::Corrupt
            } else {
                StateHealth::Intact
            }
        }
    }
}

/// What holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// A block device to check, format and mount.
    Device,
    /// An existing directory (tests, or a host without a data partition).
    Directory,
    /// Nothing configured.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatReason {
    Blank,
    Unrecognized,
    Uncorrectable,
    Unmountable,
    /// Wiping the state failed (e.g. the kernel remounted it read-only).
    WipeFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolatileReason {
    NoDevice,
    FormatFailed,
    MountFailed,
    WipeFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read the first [`PROBE_LEN`] bytes and report [`Event::Identified`].
    Identify,
    /// Run `e2fsck -p`, report [`Event::Checked`].
    Fsck,
    /// Unmount if mounted, run `mkfs.ext4`, report [`Event::Formatted`].
    Format(FormatReason),
    /// Mount the device, report [`Event::Mounted`].
    Mount,
    /// Gather a [`StateListing`], report [`Event::StateRead`].
    ReadState,
    /// Remove everything but `lost+found`, report [`Event::Wiped`].
    Wipe,
    /// Done: the data directory is usable and persistent. With
    /// `initialize`, write the marker first.
    Ready { initialize: bool },
    /// Done: use a RAM directory; nothing will survive a reboot.
    Volatile(VolatileReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Identified(Signature),
    Checked(FsckOutcome),
    Formatted { ok: bool },
    Mounted { ok: bool },
    StateRead(StateHealth),
    Wiped { ok: bool },
}

/// The decision procedure. Feed it events until it returns a final step
/// ([`Step::Ready`] or [`Step::Volatile`]); it formats at most once, so it
/// always terminates.
#[derive(Debug)]
pub struct DataPlan {
    medium: Medium,
    formatted: bool,
    last: Step,
}

impl DataPlan {
    /// The plan and its first step.
    pub fn new(medium: Medium) -> (Self, Step) {
        let first = match medium {
            Medium::Device => Step::Identify,
            Medium::Directory => Step::ReadState,
            Medium::None => Step::Volatile(VolatileReason::NoDevice),
        };
        let plan = DataPlan {
            medium,
            formatted: false,
            last: first,
        };
        (plan, first)
    }

    fn format_or(&mut self, reason: FormatReason, otherwise: VolatileReason) -> Step {
        if self.formatted || self.medium != Medium::Device {
            Step::Volatile(otherwise)
        } else {
            self.formatted = true;
            Step::Format(reason)
        }
    }

    pub fn is_final(step: Step) -> bool {
        matches!(step, Step::Ready { .. } | Step::Volatile(_))
    }

    /// The next step after `event`. Events that don't answer the last step
    /// are ignored (the last step is returned again).
    pub fn next(&mut self, event: Event) -> Step {
        use Event as E;
        let step = match (self.last, event) {
            (Step::Identify, E::Identified(sig)) => match sig {
                Signature::Ext => Step::Fsck,
                Signature::Blank => {
                    self.format_or(FormatReason::Blank, VolatileReason::FormatFailed)
                }
                Signature::Other => {
                    self.format_or(FormatReason::Unrecognized, VolatileReason::FormatFailed)
                }
            },
            (Step::Fsck, E::Checked(outcome)) => match outcome {
                FsckOutcome::Clean | FsckOutcome::Repaired => Step::Mount,
                // Without e2fsck, let the kernel judge when mounting.
                FsckOutcome::NotChecked => Step::Mount,
                FsckOutcome::Uncorrectable => {
                    self.format_or(FormatReason::Uncorrectable, VolatileReason::FormatFailed)
                }
            },
            (Step::Format(_), E::Formatted { ok: true }) => Step::Mount,
            (Step::Format(_), E::Formatted { ok: false }) => {
                Step::Volatile(VolatileReason::FormatFailed)
            }
            (Step::Mount, E::Mounted { ok: true }) => Step::ReadState,
            (Step::Mount, E::Mounted { ok: false }) => {
                self.format_or(FormatReason::Unmountable, VolatileReason::MountFailed)
            }
            (Step::ReadState, E::StateRead(health)) => match health {
                StateHealth::Empty => Step::Ready { initialize: true },
                StateHealth::Intact => Step::Ready { initialize: false },
                StateHealth::Corrupt => Step::Wipe,
            },
            (Step::Wipe, E::Wiped { ok: true }) => Step::Ready { initialize: true },
            (Step::Wipe, E::Wiped { ok: false }) => {
                self.format_or(FormatReason::WipeFailed, VolatileReason::WipeFailed)
            }
            (last, _) => last,
        };
        self.last = step;
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext_head() -> Vec<u8> {
        let mut head = vec![0u8; PROBE_LEN];
        head[EXT_MAGIC_OFFSET] = 0x53;
        head[EXT_MAGIC_OFFSET + 1] = 0xEF;
        head
    }

    #[test]
    fn identifies_blank_ext_and_other() {
        assert_eq!(identify(&vec![0; PROBE_LEN]), Signature::Blank);
        assert_eq!(identify(&vec![0xff; PROBE_LEN]), Signature::Blank);
        assert_eq!(identify(&ext_head()), Signature::Ext);
        let mut garbage = vec![0u8; PROBE_LEN];
        garbage[7] = 1;
        assert_eq!(identify(&garbage), Signature::Other);
        // A short read proves nothing blank.
        assert_eq!(identify(&[0; 100]), Signature::Other);
        assert_eq!(identify(&[]), Signature::Other);
    }

    #[test]
    fn fsck_exit_codes() {
        use FsckOutcome::*;
        let cases = [
            (Some(0), Clean),
            (Some(1), Repaired),
            (Some(2), Repaired),
            (Some(3), Repaired),
            (Some(4), Uncorrectable),
            (Some(5), Uncorrectable),
            (Some(12), Uncorrectable),
            (Some(8), NotChecked),
            (Some(16), NotChecked),
            (Some(32), NotChecked),
            (Some(128), NotChecked),
            (None, NotChecked),
        ];
        for (code, want) in cases {
            assert_eq!(FsckOutcome::from_exit_code(code), want, "{code:?}");
        }
    }

    fn listing(marker: Option<&str>, other: bool, files: [FileState; 3]) -> StateListing {
        StateListing {
            marker: marker.map(|m| m.as_bytes().to_vec()),
            has_other_entries: other,
            ca: files[0],
            key: files[1],
            cert: files[2],
        }
    }

    #[test]
    fn classification() {
        use FileState::*;
        let ok = Some(layout::MARKER_CONTENT);
        let none = [Absent; 3];
        let cases = [
            (listing(None, false, none), StateHealth::Empty),
            (listing(None, true, none), StateHealth::Corrupt),
            (
                listing(Some("re6st-init data 0\n"), true, none),
                StateHealth::Corrupt,
            ),
            (listing(ok, false, none), StateHealth::Intact),
            (
                listing(ok, true, [Valid, Valid, Valid]),
                StateHealth::Intact,
            ),
            (
                listing(ok, true, [Valid, Valid, Absent]),
                StateHealth::Intact,
            ),
            (
                listing(ok, true, [Valid, Absent, Absent]),
                StateHealth::Intact,
            ),
            (
                listing(ok, true, [Valid, Absent, Valid]),
                StateHealth::Corrupt,
            ),
            (
                listing(ok, true, [Valid, Invalid, Valid]),
                StateHealth::Corrupt,
            ),
            (
                listing(ok, true, [Invalid, Valid, Valid]),
                StateHealth::Corrupt,
            ),
            (
                listing(ok, true, [Valid, Valid, Invalid]),
                StateHealth::Corrupt,
            ),
        ];
        for (l, want) in cases {
            assert_eq!(classify(&l), want, "{l:?}");
        }
    }

    /// Runs the plan with a scripted world; returns the steps taken.
    fn run(medium: Medium, mut world: impl FnMut(Step) -> Event) -> Vec<Step> {
        let (mut plan, mut step) = DataPlan::new(medium);
        let mut steps = vec![step];
        while !DataPlan::is_final(step) {
            assert!(steps.len() < 20, "no end: {steps:?}");
            step = plan.next(world(step));
            steps.push(step);
        }
        steps
    }

    #[test]
    fn first_boot_formats_a_blank_partition() {
        let steps = run(Medium::Device, |s| match s {
            Step::Identify => Event::Identified(Signature::Blank),
            Step::Format(_) => Event::Formatted { ok: true },
            Step::Mount => Event::Mounted { ok: true },
            Step::ReadState => Event::StateRead(StateHealth::Empty),
            s => panic!("{s:?}"),
        });
        assert_eq!(
            steps,
            [
                Step::Identify,
                Step::Format(FormatReason::Blank),
                Step::Mount,
                Step::ReadState,
                Step::Ready { initialize: true }
            ]
        );
    }

    #[test]
    fn normal_boot_checks_then_mounts() {
        let steps = run(Medium::Device, |s| match s {
            Step::Identify => Event::Identified(Signature::Ext),
            Step::Fsck => Event::Checked(FsckOutcome::Repaired),
            Step::Mount => Event::Mounted { ok: true },
            Step::ReadState => Event::StateRead(StateHealth::Intact),
            s => panic!("{s:?}"),
        });
        assert_eq!(
            steps,
            [
                Step::Identify,
                Step::Fsck,
                Step::Mount,
                Step::ReadState,
                Step::Ready { initialize: false }
            ]
        );
    }

    #[test]
    fn uncorrectable_filesystem_is_reformatted() {
        let steps = run(Medium::Device, |s| match s {
            Step::Identify => Event::Identified(Signature::Ext),
            Step::Fsck => Event::Checked(FsckOutcome::Uncorrectable),
            Step::Format(_) => Event::Formatted { ok: true },
            Step::Mount => Event::Mounted { ok: true },
            Step::ReadState => Event::StateRead(StateHealth::Empty),
            s => panic!("{s:?}"),
        });
        assert!(steps.contains(&Step::Format(FormatReason::Uncorrectable)));
        assert_eq!(steps.last(), Some(&Step::Ready { initialize: true }));
    }

    #[test]
    fn corrupt_state_is_wiped_for_fresh_provisioning() {
        let steps = run(Medium::Device, |s| match s {
            Step::Identify => Event::Identified(Signature::Ext),
            Step::Fsck => Event::Checked(FsckOutcome::Clean),
            Step::Mount => Event::Mounted { ok: true },
            Step::ReadState => Event::StateRead(StateHealth::Corrupt),
            Step::Wipe => Event::Wiped { ok: true },
            s => panic!("{s:?}"),
        });
        assert_eq!(
            &steps[3..],
            [
                Step::ReadState,
                Step::Wipe,
                Step::Ready { initialize: true }
            ]
        );
    }

    #[test]
    fn failed_wipe_reformats_once() {
        let steps = run(Medium::Device, |s| match s {
            Step::Identify => Event::Identified(Signature::Ext),
            Step::Fsck => Event::Checked(FsckOutcome::Clean),
            Step::Format(_) => Event::Formatted { ok: true },
            Step::Mount => Event::Mounted { ok: true },
            Step::ReadState => Event::StateRead(StateHealth::Corrupt),
            Step::Wipe => Event::Wiped { ok: false },
            s => panic!("{s:?}"),
        });
        // Formatted once, then the state is still "corrupt" and wiping fails
        // again: give up on persistence rather than loop.
        assert_eq!(
            steps
                .iter()
                .filter(|s| matches!(s, Step::Format(_)))
                .count(),
            1
        );
        assert_eq!(
            steps.last(),
            Some(&Step::Volatile(VolatileReason::WipeFailed))
        );
    }

    #[test]
    fn unmountable_after_format_goes_volatile() {
        let steps = run(Medium::Device, |s| match s {
            Step::Identify => Event::Identified(Signature::Other),
            Step::Format(_) => Event::Formatted { ok: true },
            Step::Mount => Event::Mounted { ok: false },
            s => panic!("{s:?}"),
        });
        assert_eq!(
            steps,
            [
                Step::Identify,
                Step::Format(FormatReason::Unrecognized),
                Step::Mount,
                Step::Volatile(VolatileReason::MountFailed)
            ]
        );
    }

    #[test]
    fn missing_fsck_lets_mount_decide() {
        let steps = run(Medium::Device, |s| match s {
            Step::Identify => Event::Identified(Signature::Ext),
            Step::Fsck => Event::Checked(FsckOutcome::NotChecked),
            Step::Mount => Event::Mounted { ok: false },
            Step::Format(_) => Event::Formatted { ok: false },
            s => panic!("{s:?}"),
        });
        assert_eq!(
            &steps[2..],
            [
                Step::Mount,
                Step::Format(FormatReason::Unmountable),
                Step::Volatile(VolatileReason::FormatFailed)
            ]
        );
    }

    #[test]
    fn directory_and_missing_media() {
        let steps = run(Medium::Directory, |s| match s {
            Step::ReadState => Event::StateRead(StateHealth::Corrupt),
            Step::Wipe => Event::Wiped { ok: false },
            s => panic!("{s:?}"),
        });
        // A directory is never formatted.
        assert_eq!(
            steps,
            [
                Step::ReadState,
                Step::Wipe,
                Step::Volatile(VolatileReason::WipeFailed)
            ]
        );
        assert_eq!(
            run(Medium::None, |s| panic!("{s:?}")),
            [Step::Volatile(VolatileReason::NoDevice)]
        );
    }

    #[test]
    fn unrelated_events_do_not_advance() {
        let (mut plan, first) = DataPlan::new(Medium::Device);
        assert_eq!(first, Step::Identify);
        assert_eq!(plan.next(Event::Mounted { ok: true }), Step::Identify);
        assert_eq!(plan.next(Event::Identified(Signature::Ext)), Step::Fsck);
    }

    proptest::proptest! {
        /// Whatever the world answers, the plan ends within a few steps and
        /// formats at most once.
        #[test]
        fn always_terminates(answers in proptest::collection::vec(0u8..=255, 32), dir in proptest::bool::ANY) {
            let mut i = 0;
            let medium = if dir { Medium::Directory } else { Medium::Device };
            let steps = run(medium, |s| {
                let a = answers[i % answers.len()];
                i += 1;
                match s {
                    Step::Identify => Event::Identified([Signature::Blank, Signature::Ext, Signature::Other][a as usize % 3]),
                    Step::Fsck => Event::Checked(FsckOutcome::from_exit_code(Some(i32::from(a) % 9))),
                    Step::Format(_) => Event::Formatted { ok: a % 2 == 0 },
                    Step::Mount => Event::Mounted { ok: a % 2 == 0 },
                    Step::ReadState => Event::StateRead([StateHealth::Empty, StateHealth::Intact, StateHealth::Corrupt][a as usize % 3]),
                    Step::Wipe => Event::Wiped { ok: a % 2 == 0 },
                    s => panic!("{s:?}"),
                }
            });
            proptest::prop_assert!(steps.iter().filter(|s| matches!(s, Step::Format(_))).count() <= 1);
        }

        #[test]
        fn identify_never_panics(head in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
            let _ = identify(&head);
        }
    }
}
