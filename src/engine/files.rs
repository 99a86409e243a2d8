//! File-system helpers of the engine: sorted listings, fsync, atomic JSON.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Every file under `dir`, recursively, sorted.
pub fn walk_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in read_dir_sorted(dir)? {
        if entry.is_dir() {
            out.extend(walk_files(&entry)?);
        } else {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Entries of `dir` sorted by name (empty when `dir` is absent).
pub fn read_dir_sorted(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    Ok(paths)
}

/// fsync a directory (so renames into it are durable).
pub fn fsync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Read a JSON file, or `T::default()` when it does not exist.
pub fn read_json_or_default<T: Default + for<'de> Deserialize<'de>>(
    path: &Path,
) -> anyhow::Result<T> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Write JSON to a temp name, fsync, rename over `path`. The temp name is
/// unique to the process and call: files written outside the global lock
/// (`statcache.json`) may be saved by two runs at once (last one wins).
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let tmp = path.with_extension(format!("json.{}-{n}.new", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, serde_json::to_string_pretty(value)? + "\n")?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}
