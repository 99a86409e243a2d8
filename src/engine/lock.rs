//! Kernel-released file locks (`flock` through `std::fs::File::lock`).
//!
//! ```text
//! artifacts/.scir/lock               global: held for milliseconds while refs
//!                                    and the public view change
//! artifacts/.scir/locks/<key>.lock   per task key: held while the task runs
//! artifacts/.scir/runs/<id>/run.lock held by a run for its whole life (gc
//!                                    uses it to tell live staging dirs)
//! ```
//!
//! The holder writes who it is (run id, pid, what) into the lock file after
//! acquiring it, so a waiter can say whom it waits for. The kernel releases a
//! lock when its holder dies (SIGKILL, OOM, power loss): there is never a
//! stale lock to remove by hand. Lock files themselves are never deleted while
//! in use (deleting a flock file races with new holders).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::user_err;

/// Who holds (or wants) a lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub run_id: String,
    pub pid: u32,
    /// What the holder does under the lock (`computing train@1`).
    pub doing: String,
}

impl Holder {
    /// This process, in `run_id`, doing `doing`.
    pub fn me(run_id: &str, doing: impl Into<String>) -> Holder {
        Holder {
            run_id: run_id.to_string(),
            pid: std::process::id(),
            doing: doing.into(),
        }
    }
}

/// Hold `path` as this process (`who`, doing `doing`), waiting for another holder and
/// saying so on stderr.
pub fn hold(path: &Path, who: &str, doing: &str) -> anyhow::Result<Held> {
    acquire(path, &Holder::me(who, doing), Wait::Block, &|m| {
        eprintln!("{m}")
    })
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "run {} (pid {}) {}", self.run_id, self.pid, self.doing)
    }
}

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Held {
    file: File,
    pub path: PathBuf,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Clearing the holder is cosmetic; the kernel releases the lock on close.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Whether to wait for a held lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wait {
    #[default]
    Block,
    NoWait,
}

fn open(path: &Path) -> anyhow::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    Ok(file)
}

/// The holder recorded in a lock file, if readable.
pub fn read_holder(path: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// Take the lock at `path`. When it is held: with [`Wait::Block`] call
/// `on_wait` with the holder's description and block; with [`Wait::NoWait`]
/// fail with a user error naming the holder.
pub fn acquire(
    path: &Path,
    me: &Holder,
    wait: Wait,
    on_wait: &dyn Fn(&str),
) -> anyhow::Result<Held> {
    let mut file = open(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder =
                read_holder(path).map_or_else(|| "another scir run".to_string(), |h| h.to_string());
            if wait == Wait::NoWait {
                return Err(user_err!(
                    "{} is locked by {holder}\nWait for it to finish, or run again without \
                     --no-wait to wait automatically.",
                    path.display()
                )
                .into());
            }
            on_wait(&format!("waiting for {holder} (lock {})", path.display()));
            file.lock()?;
        }
        Err(TryLockError::Error(e)) => return Err(e.into()),
    }
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(serde_json::to_string(me)?.as_bytes())?;
    file.flush()?;
    Ok(Held {
        file,
        path: path.to_path_buf(),
    })
}

/// Whether some process holds the lock at `path` right now.
pub fn is_held(path: &Path) -> bool {
    let Ok(file) = OpenOptions::new().read(true).write(true).open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let me = Holder {
            run_id: "r1".into(),
            pid: 7,
            doing: "computing a@1".into(),
        };
        let held = acquire(&path, &me, Wait::NoWait, &|_| {}).unwrap();
        assert!(is_held(&path));
        let other = Holder {
            run_id: "r2".into(),
            pid: 8,
            doing: "x".into(),
        };
        let err = acquire(&path, &other, Wait::NoWait, &|_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("run r1 (pid 7) computing a@1"), "{err}");
        drop(held);
        assert!(!is_held(&path));
        acquire(&path, &other, Wait::NoWait, &|_| {}).unwrap();
    }
}
