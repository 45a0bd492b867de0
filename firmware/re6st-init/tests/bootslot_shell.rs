//! The initramfs's slot choice (`board/common/bootslot.sh`, busybox sh)
//! must agree with `BootEnv::boot`: same slot, same environment written.
//! Runs the script under /bin/sh and under busybox sh (the initramfs's
//! shell; busybox-static comes with `make deps`).

use std::path::{Path, PathBuf};
use std::process::Command;

use re6st_init::bootslot::{BootEnv, Slot, Trial, COPIES, COPY_SIZE};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board/common/bootslot.sh")
}

fn dash() -> Vec<String> {
    vec!["/bin/sh".to_owned()]
}

fn busybox() -> Vec<String> {
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox missing (apt-get install busybox-static, or make deps)");
    vec![bb.to_owned(), "sh".to_owned()]
}

/// Runs the shell's choice on a copy of `partition`; returns the slot and
/// the partition afterwards.
fn shell_choose(shell: &[String], partition: &[u8]) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("bootenv");
    std::fs::write(&dev, partition).unwrap();
    let out = Command::new(&shell[0])
        .args(&shell[1..])
        .arg("-c")
        .arg(r#". "$0"; bootslot_choose "$1" "$2""#)
        .arg(script())
        .arg(&dev)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{shell:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read(&dev).unwrap();
    assert_eq!(
        after.len(),
        partition.len(),
        "the shell resized the partition"
    );
    (
        String::from_utf8(out.stdout).unwrap().trim().to_owned(),
        after,
    )
}

fn envs() -> Vec<BootEnv> {
    let mut v = Vec::new();
    for seq in [0, 41] {
        for active in [Slot::A, Slot::B] {
            for tries in [None, Some(0), Some(1), Some(3)] {
                for failed in [None, Some(Slot::B)] {
                    v.push(BootEnv {
                        seq,
                        active,
                        trial: tries.map(|tries| Trial {
                            slot: active.other(),
                            tries,
                        }),
                        failed,
                    });
                }
            }
        }
    }
    v
}

fn partition(copies: [Option<&BootEnv>; COPIES], garbage: bool) -> Vec<u8> {
    let mut p = vec![0u8; COPIES * COPY_SIZE + 512];
    for (i, c) in copies.iter().enumerate() {
        let range = i * COPY_SIZE..(i + 1) * COPY_SIZE;
        match c {
            Some(env) => p[range].copy_from_slice(&env.encode()),
            None if garbage => p[range].fill(b'x'),
            None => {}
        }
    }
    p
}

fn check(shell: &[String], p: &[u8]) {
    let (env, _) = BootEnv::read(p);
    let (slot, next) = env.boot();
    let (got, after) = shell_choose(shell, p);
    assert_eq!(got, slot.name(), "{shell:?} chose differently for {env:?}");
    let (written, _) = BootEnv::read(&after);
    assert_eq!(
        written,
        next.unwrap_or(env),
        "{shell:?} wrote differently for {env:?}"
    );
    // The shell only ever rewrites the older copy: the one read stays.
    if next.is_some() {
        let (_, older) = BootEnv::read(p);
        let kept = (older + 1) % COPIES;
        assert_eq!(
            after[kept * COPY_SIZE..(kept + 1) * COPY_SIZE],
            p[kept * COPY_SIZE..(kept + 1) * COPY_SIZE],
            "{shell:?} overwrote the current copy"
        );
    }
}

#[test]
fn sh_and_rust_choose_the_same_slot_and_write_the_same_environment() {
    same_choices(&dash());
}

#[test]
fn busybox_and_rust_choose_the_same_slot_and_write_the_same_environment() {
    same_choices(&busybox());
}

#[test]
fn sh_refuses_torn_and_tampered_copies_as_rust_does() {
    refuses_bad_copies(&dash());
}

#[test]
fn busybox_refuses_torn_and_tampered_copies_as_rust_does() {
    refuses_bad_copies(&busybox());
}

fn same_choices(shell: &[String]) {
    {
        for env in envs() {
            let older = BootEnv {
                seq: env.seq.saturating_sub(1),
                active: env.active.other(),
                trial: None,
                failed: None,
            };
            check(shell, &partition([Some(&env), None], false));
            check(shell, &partition([None, Some(&env)], true));
            if env.seq > 0 {
                check(shell, &partition([Some(&older), Some(&env)], false));
                check(shell, &partition([Some(&env), Some(&older)], false));
            }
        }
        // Nothing valid: slot a, nothing written.
        check(shell, &partition([None, None], false));
        check(shell, &partition([None, None], true));
    }
}

fn refuses_bad_copies(shell: &[String]) {
    let good = BootEnv {
        seq: 3,
        active: Slot::B,
        trial: Some(Trial {
            slot: Slot::A,
            tries: 1,
        }),
        failed: None,
    };
    let older = BootEnv {
        seq: 2,
        active: Slot::B,
        trial: None,
        failed: None,
    };
    {
        for flip in [0usize, 5, 20, 30, 40, 60] {
            let mut p = partition([Some(&older), Some(&good)], false);
            p[COPY_SIZE + flip] ^= 0x01;
            check(shell, &p);
        }
        // A torn write: only the first 50 bytes of the new copy made it.
        let mut p = partition([Some(&older), None], false);
        p[COPY_SIZE..COPY_SIZE + 50].copy_from_slice(&good.encode()[..50]);
        check(shell, &p);
    }
}
