//! A/B root filesystem slots: the boot environment and its transitions.
//!
//! The firmware disk holds two root slots (`a`, `b`) and a small boot
//! environment partition. The environment is kept twice (two 4 KiB copies,
//! each with a sequence number and a SHA-256 of its text); a writer always
//! overwrites the older copy, so a power cut while writing leaves the
//! previous state readable.
//!
//! Who changes it:
//! - `re6st init upgrade` writes the inactive slot, verifies it and starts
//!   a trial of it ([`BootEnv::begin_trial`]);
//! - the initramfs picks the slot at every boot ([`BootEnv::boot`]; the
//!   shell twin is `board/common/bootslot.sh`, checked against this one by
//!   the tests): a trial slot gets a bounded number of boots, then the
//!   active slot is booted again and the trial recorded as failed;
//! - init confirms a trial slot once the router is healthy
//!   ([`BootEnv::confirm`]), which makes it the active slot.
//!
//! Text of one copy (NUL-padded to [`COPY_SIZE`]):
//! ```text
//! re6st-bootenv 1
//! seq=7
//! active=a
//! trial=b        (optional, with tries)
//! tries=1
//! failed=b       (optional: the last trial that did not come up)
//! sha256=<hex of all the lines above>
//! ```

use std::fmt;

use thiserror::Error;

/// Size of one copy of the environment; copy `i` starts at `i * COPY_SIZE`.
pub const COPY_SIZE: usize = 4096;
pub const COPIES: usize = 2;
const MAGIC: &str = "re6st-bootenv 1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A slot on trial: booted at most `tries` more times before falling back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trial {
    pub slot: Slot,
    pub tries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootEnv {
    pub seq: u64,
    pub active: Slot,
    pub trial: Option<Trial>,
    pub failed: Option<Slot>,
}

impl Default for BootEnv {
    /// A factory-fresh disk: slot `a`, nothing on trial.
    fn default() -> Self {
        BootEnv {
            seq: 0,
            active: Slot::A,
            trial: None,
            failed: None,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("not a boot environment (no \"{MAGIC}\" header)")]
    Magic,
    #[error("checksum mismatch (torn or corrupt write)")]
    Checksum,
    #[error("malformed line {0:?}")]
    Line(String),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("trial of the active slot")]
    TrialOfActive,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UpgradeError {
    #[error(
        "slot {booted} is on trial and not confirmed yet: wait for it to be confirmed, or reboot to fall back to {active}"
    )]
    TrialPending { booted: Slot, active: Slot },
    #[error("booted from slot {booted} but the active slot is {active}: reboot first")]
    NotActive { booted: Slot, active: Slot },
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(data))
}

impl BootEnv {
    /// The text of one copy, padded with NULs to [`COPY_SIZE`].
    pub fn encode(&self) -> Vec<u8> {
        let mut body = format!("{MAGIC}\nseq={}\nactive={}\n", self.seq, self.active);
        if let Some(t) = self.trial {
            body += &format!("trial={}\ntries={}\n", t.slot, t.tries);
        }
        if let Some(f) = self.failed {
            body += &format!("failed={f}\n");
        }
        let sum = sha256_hex(body.as_bytes());
        let mut out = format!("{body}sha256={sum}\n").into_bytes();
        out.resize(COPY_SIZE, 0);
        out
    }

    /// Parses one copy (trailing NULs ignored).
    pub fn decode(copy: &[u8]) -> Result<BootEnv, EnvError> {
        let end = copy.iter().position(|&b| b == 0).unwrap_or(copy.len());
        let text = std::str::from_utf8(&copy[..end]).map_err(|_| EnvError::Magic)?;
        if text.lines().next() != Some(MAGIC) {
            return Err(EnvError::Magic);
        }
        let at = text.find("\nsha256=").ok_or(EnvError::Checksum)? + 1;
        let (body, sum_line) = text.split_at(at);
        if sum_line != format!("sha256={}\n", sha256_hex(body.as_bytes())) {
            return Err(EnvError::Checksum);
        }
        let (mut seq, mut active, mut trial, mut tries, mut failed) =
            (None, None, None, None, None);
        for line in body.lines().skip(1) {
            let bad = || EnvError::Line(line.to_owned());
            let (key, value) = line.split_once('=').ok_or_else(bad)?;
            match key {
                "seq" => seq = Some(value.parse::<u64>().map_err(|_| bad())?),
                "active" => active = Some(Slot::parse(value).ok_or_else(bad)?),
                "trial" => trial = Some(Slot::parse(value).ok_or_else(bad)?),
                "tries" => tries = Some(value.parse::<u32>().map_err(|_| bad())?),
                "failed" => failed = Some(Slot::parse(value).ok_or_else(bad)?),
                // Newer writers may add keys; they are covered by the sum.
                _ => {}
            }
        }
        let active = active.ok_or(EnvError::Missing("active"))?;
        let trial = match (trial, tries) {
            (Some(slot), Some(tries)) => Some(Trial { slot, tries }),
            (None, None) => None,
            (Some(_), None) => return Err(EnvError::Missing("tries")),
            (None, Some(_)) => return Err(EnvError::Missing("trial")),
        };
        if trial.is_some_and(|t| t.slot == active) {
            return Err(EnvError::TrialOfActive);
        }
        Ok(BootEnv {
            seq: seq.ok_or(EnvError::Missing("seq"))?,
            active,
            trial,
            failed,
        })
    }

    /// The current environment from the whole partition (both copies): the
    /// valid copy with the highest sequence number, and the index of the
    /// copy the next write goes to. No valid copy: the factory default.
    pub fn read(partition: &[u8]) -> (BootEnv, usize) {
        let best = (0..COPIES)
            .filter_map(|i| {
                let copy = partition.get(i * COPY_SIZE..(i + 1) * COPY_SIZE)?;
                BootEnv::decode(copy).ok().map(|env| (env, i))
            })
            .max_by_key(|(env, _)| env.seq);
        match best {
            Some((env, i)) => (env, (i + 1) % COPIES),
            None => (BootEnv::default(), 0),
        }
    }

    fn next(&self) -> BootEnv {
        BootEnv {
            seq: self.seq.saturating_add(1),
            ..*self
        }
    }

    /// The initramfs's choice: the slot to boot, and the environment to
    /// write first (if it changes). A trial slot is booted while it has
    /// tries left (each boot uses one); after that, the active slot again.
    pub fn boot(&self) -> (Slot, Option<BootEnv>) {
        match self.trial {
            Some(t) if t.tries > 0 => {
                let mut env = self.next();
                env.trial = Some(Trial {
                    tries: t.tries - 1,
                    ..t
                });
                (t.slot, Some(env))
            }
            Some(t) => {
                let mut env = self.next();
                env.trial = None;
                env.failed = Some(t.slot);
                (self.active, Some(env))
            }
            None => (self.active, None),
        }
    }

    /// The environment that puts `booted`'s other slot on trial for `tries`
    /// boots (after it has been written and verified).
    pub fn begin_trial(&self, booted: Slot, tries: u32) -> Result<BootEnv, UpgradeError> {
        if let Some(t) = self.trial {
            if t.slot == booted {
                return Err(UpgradeError::TrialPending {
                    booted,
                    active: self.active,
                });
            }
        }
        if booted != self.active {
            return Err(UpgradeError::NotActive {
                booted,
                active: self.active,
            });
        }
        let mut env = self.next();
        env.trial = Some(Trial {
            slot: booted.other(),
            tries,
        });
        env.failed = None;
        Ok(env)
    }

    /// Whether `booted` is a slot on trial (to be confirmed or given up).
    pub fn on_trial(&self, booted: Slot) -> bool {
        self.trial.is_some_and(|t| t.slot == booted)
    }

    /// Confirms the booted trial slot: it becomes the active slot.
    pub fn confirm(&self, booted: Slot) -> Option<BootEnv> {
        if !self.on_trial(booted) {
            return None;
        }
        let mut env = self.next();
        env.active = booted;
        env.trial = None;
        env.failed = None;
        Some(env)
    }

    /// One line for `re6st init status`.
    pub fn describe(&self, booted: Slot) -> String {
        let mut s = format!("booted {booted}, active {}", self.active);
        if let Some(t) = self.trial {
            s += &format!(
                ", on trial {} ({} boot{} left)",
                t.slot,
                t.tries,
                if t.tries == 1 { "" } else { "s" }
            );
        }
        if let Some(f) = self.failed {
            s += &format!(", last upgrade to {f} did not come up");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn partition(copies: &[Option<&BootEnv>]) -> Vec<u8> {
        let mut p = vec![0u8; COPIES * COPY_SIZE];
        for (i, c) in copies.iter().enumerate() {
            if let Some(env) = c {
                p[i * COPY_SIZE..(i + 1) * COPY_SIZE].copy_from_slice(&env.encode());
            }
        }
        p
    }

    fn env(seq: u64, active: Slot, trial: Option<(Slot, u32)>, failed: Option<Slot>) -> BootEnv {
        BootEnv {
            seq,
            active,
            trial: trial.map(|(slot, tries)| Trial { slot, tries }),
            failed,
        }
    }

    #[test]
    fn a_blank_partition_boots_slot_a_and_writes_nothing() {
        let (e, next) = BootEnv::read(&vec![0u8; 2 * COPY_SIZE]);
        assert_eq!(e, BootEnv::default());
        assert_eq!(next, 0);
        assert_eq!(e.boot(), (Slot::A, None));
    }

    #[test]
    fn the_newest_valid_copy_wins_and_the_other_is_written_next() {
        let old = env(3, Slot::A, None, None);
        let new = env(4, Slot::B, None, None);
        assert_eq!(
            BootEnv::read(&partition(&[Some(&old), Some(&new)])),
            (new, 0)
        );
        assert_eq!(
            BootEnv::read(&partition(&[Some(&new), Some(&old)])),
            (new, 1)
        );
        // A torn write of the newer copy: the older one stands.
        let mut p = partition(&[Some(&old), Some(&new)]);
        p[COPY_SIZE + 20] ^= 1;
        assert_eq!(BootEnv::read(&p), (old, 1));
    }

    #[test]
    fn a_trial_gets_its_boots_then_falls_back() {
        let e = env(1, Slot::A, None, None);
        let e = e.begin_trial(Slot::A, 1).unwrap();
        assert_eq!(
            e.trial,
            Some(Trial {
                slot: Slot::B,
                tries: 1
            })
        );
        let (slot, e) = e.boot();
        assert_eq!(slot, Slot::B);
        let e = e.unwrap();
        assert!(e.on_trial(Slot::B));
        // That boot did not confirm: the next one falls back to a.
        let (slot, e) = e.boot();
        assert_eq!(slot, Slot::A);
        let e = e.unwrap();
        assert_eq!(
            (e.active, e.trial, e.failed),
            (Slot::A, None, Some(Slot::B))
        );
        assert_eq!(e.boot(), (Slot::A, None));
        assert!(e.describe(Slot::A).contains("upgrade to b did not come up"));
    }

    #[test]
    fn a_confirmed_trial_becomes_active() {
        let e = env(5, Slot::A, None, Some(Slot::B));
        let e = e.begin_trial(Slot::A, 2).unwrap();
        assert_eq!(e.failed, None);
        let (_, e) = e.boot();
        let e = e.unwrap();
        assert_eq!(e.confirm(Slot::A), None, "a is not on trial");
        let c = e.confirm(Slot::B).unwrap();
        assert_eq!((c.active, c.trial, c.seq), (Slot::B, None, e.seq + 1));
        assert_eq!(c.boot(), (Slot::B, None));
    }

    #[test]
    fn no_upgrade_from_an_unconfirmed_or_fallen_back_boot() {
        let e = env(1, Slot::A, Some((Slot::B, 0)), None);
        assert_eq!(
            e.begin_trial(Slot::B, 1),
            Err(UpgradeError::TrialPending {
                booted: Slot::B,
                active: Slot::A
            })
        );
        let e = env(1, Slot::A, None, None);
        assert!(matches!(
            e.begin_trial(Slot::B, 1),
            Err(UpgradeError::NotActive { .. })
        ));
    }

    #[test]
    fn malformed_copies_are_refused() {
        let good = env(9, Slot::B, Some((Slot::A, 1)), None).encode();
        let text = String::from_utf8(good.clone()).unwrap();
        let text = text.trim_end_matches('\0');
        assert_eq!(BootEnv::decode(b"hello"), Err(EnvError::Magic));
        assert_eq!(BootEnv::decode(&[0xff; 10]), Err(EnvError::Magic));
        let tampered = text.replace("tries=1", "tries=9");
        assert_eq!(
            BootEnv::decode(tampered.as_bytes()),
            Err(EnvError::Checksum)
        );
        let no_sum = text.split("sha256=").next().unwrap();
        assert_eq!(BootEnv::decode(no_sum.as_bytes()), Err(EnvError::Checksum));
        let resign = |body: &str| format!("{body}sha256={}\n", sha256_hex(body.as_bytes()));
        let bad = resign("re6st-bootenv 1\nseq=1\nactive=c\n");
        assert!(matches!(
            BootEnv::decode(bad.as_bytes()),
            Err(EnvError::Line(_))
        ));
        let bad = resign("re6st-bootenv 1\nseq=1\nactive=a\ntrial=a\ntries=1\n");
        assert_eq!(
            BootEnv::decode(bad.as_bytes()),
            Err(EnvError::TrialOfActive)
        );
        let bad = resign("re6st-bootenv 1\nseq=1\nactive=a\ntrial=b\n");
        assert_eq!(
            BootEnv::decode(bad.as_bytes()),
            Err(EnvError::Missing("tries"))
        );
        let newer = resign("re6st-bootenv 1\nseq=1\nactive=b\ncolour=blue\n");
        assert_eq!(BootEnv::decode(newer.as_bytes()).unwrap().active, Slot::B);
    }

    fn any_slot() -> impl Strategy<Value = Slot> {
        prop_oneof![Just(Slot::A), Just(Slot::B)]
    }

    fn any_env() -> impl Strategy<Value = BootEnv> {
        (
            any::<u64>(),
            any_slot(),
            proptest::option::of(0u32..4),
            proptest::option::of(any_slot()),
        )
            .prop_map(|(seq, active, tries, failed)| BootEnv {
                seq,
                active,
                trial: tries.map(|tries| Trial {
                    slot: active.other(),
                    tries,
                }),
                failed,
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(e in any_env()) {
            prop_assert_eq!(BootEnv::decode(&e.encode()), Ok(e));
        }

        #[test]
        fn any_bytes_decode_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = BootEnv::decode(&data);
        }

        /// However many boots without a confirmation, a trial ends on the
        /// active slot within tries + 1 boots.
        #[test]
        fn unconfirmed_trials_always_fall_back(e in any_env()) {
            let mut e = e;
            let active = e.active;
            let seq = e.seq;
            for _ in 0..6 {
                if let (_, Some(next)) = e.boot() {
                    prop_assert!(next.seq > e.seq || seq == u64::MAX);
                    e = next;
                }
            }
            prop_assert_eq!(e.boot(), (active, None));
        }
    }
}
