//! One node per run directory. A second instance would fight the first
//! over the same address, taps and sockets, and the first one's clean-up
//! would then remove what the second set up. The lock is an `flock` on a
//! file in the run directory: the kernel drops it when the process dies,
//! however it dies, so a lock never outlives its node.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::log::log;

/// The lock file's name in the run directory; it holds the owner's pid.
pub const LOCK_FILE: &str = "node.lock";

/// Why the run directory's lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("another node{} uses the run directory {} (lock {})",
        pid_text(*owner), run.display(), lock.display())]
    Busy {
        run: PathBuf,
        lock: PathBuf,
        owner: Option<u32>,
    },
    #[error("{}: {source}", lock.display())]
    Open {
        lock: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot lock: {source}", lock.display())]
    Lock { lock: PathBuf, source: Errno },
}

/// Held for the life of the node.
pub struct InstanceLock {
    _lock: Flock<File>,
}

/// Takes the run directory's lock. A previous instance still cleaning up
/// (a quick restart) gets `wait` to finish; after that, or when the lock
/// file cannot be used, a clear error.
pub async fn acquire(
    run: &Path,
    wait: Duration,
    verbose: u8,
) -> Result<InstanceLock, InstanceError> {
    let path = run.join(LOCK_FILE);
    let deadline = tokio::time::Instant::now() + wait;
    let mut told = false;
    loop {
        match try_lock(&path)? {
            Ok(lock) => {
                // The pid is only for the error message of a later instance.
                let mut f: &File = &lock;
                let _ = f
                    .set_len(0)
                    .and_then(|()| f.rewind())
                    .and_then(|()| writeln!(f, "{}", std::process::id()));
                if told {
                    log(1, verbose, "the previous instance stopped");
                }
                return Ok(InstanceLock { _lock: lock });
            }
            Err(()) => {
                let owner = holder(&path);
                if tokio::time::Instant::now() >= deadline {
                    return Err(InstanceError::Busy {
                        run: run.to_owned(),
                        lock: path,
                        owner,
                    });
                }
                if !told {
                    told = true;
                    log(
                        1,
                        verbose,
                        format!(
                            "another node{} uses the run directory {}: waiting up to {} s for it to stop",
                            pid_text(owner),
                            run.display(),
                            wait.as_secs()
                        ),
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// `Ok(Err(()))` when another process holds the lock.
fn try_lock(path: &Path) -> Result<Result<Flock<File>, ()>, InstanceError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| InstanceError::Open {
            lock: path.to_owned(),
            source,
        })?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Ok(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(Err(())),
        Err((_, source)) => Err(InstanceError::Lock {
            lock: path.to_owned(),
            source,
        }),
    }
}

/// " (pid N)" when the lock's owner is known, for messages.
fn pid_text(owner: Option<u32>) -> String {
    owner.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

/// The pid in the lock file, if any.
fn holder(path: &Path) -> Option<u32> {
    let mut s = String::new();
    let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut s));
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_instance_waits_then_fails_with_the_owner() {
        let dir = std::env::temp_dir().join(format!("re6st-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = acquire(&dir, Duration::ZERO, 0).await.unwrap();
        // flock is per open file: a second open in this process conflicts
        // as another process's would.
        let e = match acquire(&dir, Duration::from_millis(300), 0).await {
            Ok(_) => panic!("two instances got the lock"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(&format!("(pid {})", std::process::id())), "{e}");
        assert!(e.contains(&dir.display().to_string()), "{e}");
        drop(first);
        let again = acquire(&dir, Duration::ZERO, 0).await;
        assert!(again.is_ok(), "the lock outlived its owner");
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_waiting_instance_gets_the_lock_when_the_first_stops() {
        let dir = std::env::temp_dir().join(format!("re6st-lock-w-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = acquire(&dir, Duration::ZERO, 0).await.unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(first);
        });
        let second = acquire(&dir, Duration::from_secs(20), 0).await;
        assert!(second.is_ok(), "{:?}", second.err());
        release.await.unwrap();
        drop(second);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
