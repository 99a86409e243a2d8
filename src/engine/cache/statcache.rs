//! Digests of external files, remembered by `(dev, inode, size, mtime)`.
//!
//! ```text
//! artifacts/.scir/statcache.json   absolute path -> { dev, ino, size, mtime_ns, digest }
//! ```
//!
//! External inputs (a Hugging Face checkpoint directory, a prompt file) can be
//! gigabytes; re-hashing them on every `scir run` would make an all-hit run
//! slow. The stat tuple is only a hint to skip re-hashing, never the truth: a
//! copy of the project (new inodes) or any edit (new size or mtime) re-hashes,
//! and the key always holds the content digest. Objects scir writes itself are
//! never re-hashed (their digests come from their manifests). The cache is
//! loaded lazily and saved by `scir run` (atomically; last writer wins, which
//! is harmless for a cache). Readers such as `scir status` never write it.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One remembered digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    digest: String,
}

/// The stat cache of one artifacts directory.
#[derive(Debug)]
pub struct StatCache {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    dirty: bool,
    entries: BTreeMap<String, Entry>,
}

const NANOS: i128 = 1_000_000_000;

impl StatCache {
    /// The cache stored at `path` (read on first use).
    pub fn new(path: PathBuf) -> StatCache {
        StatCache {
            path,
            state: Mutex::new(State::default()),
        }
    }

    /// The digest of a file, or of a directory (over its files' relative
    /// paths and digests, recursively, following symlinks as a Hugging Face
    /// cache's snapshot directories need).
    pub fn digest_path(&self, path: &Path) -> anyhow::Result<String> {
        if !path.is_dir() {
            return self.digest(path);
        }
        let mut files = BTreeMap::new();
        for file in crate::engine::files::walk_files(path)? {
            let rel = file
                .strip_prefix(path)?
                .to_string_lossy()
                .replace('\\', "/");
            files.insert(rel, self.digest(&file)?);
        }
        Ok(crate::engine::cache::output_digest(&files))
    }

    /// The BLAKE3 digest (hex) of the file at `file`, re-hashed only when its
    /// stat tuple differs from the remembered one.
    pub fn digest(&self, file: &Path) -> anyhow::Result<String> {
        let abs = std::path::absolute(file)?;
        let meta = std::fs::metadata(&abs)?;
        let stat = |digest: String| Entry {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * NANOS + i128::from(meta.mtime_nsec()),
            digest,
        };
        let name = abs.display().to_string();
        let mut state = self
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("stat cache poisoned"))?;
        if !state.loaded {
            state.entries = std::fs::read_to_string(&self.path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            state.loaded = true;
        }
        if let Some(e) = state.entries.get(&name)
            && *e == stat(e.digest.clone())
        {
            return Ok(e.digest.clone());
        }
        let digest = crate::table::digest_file(&abs)?;
        state.entries.insert(name, stat(digest.clone()));
        state.dirty = true;
        Ok(digest)
    }

    /// Write the cache back if it changed (into an existing store only).
    pub fn save(&self) -> anyhow::Result<()> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("stat cache poisoned"))?;
        let exists = self.path.parent().is_some_and(Path::is_dir);
        if state.dirty && exists {
            crate::engine::files::write_json_atomic(&self.path, &state.entries)?;
            state.dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "one").unwrap();
        let cache = StatCache::new(dir.path().join("statcache.json"));
        let d1 = cache.digest(&file).unwrap();
        assert_eq!(d1, crate::table::digest_file(&file).unwrap());
        cache.save().unwrap();
        let again = StatCache::new(dir.path().join("statcache.json"));
        assert_eq!(again.digest(&file).unwrap(), d1);
        std::fs::write(&file, "two!").unwrap();
        assert_ne!(again.digest(&file).unwrap(), d1);
    }

    #[test]
    fn directories_digest_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        std::fs::create_dir_all(model.join("sub")).unwrap();
        std::fs::write(model.join("config.json"), "{}").unwrap();
        std::fs::write(model.join("sub/w.bin"), "w").unwrap();
        let cache = StatCache::new(dir.path().join("statcache.json"));
        let d1 = cache.digest_path(&model).unwrap();
        std::fs::write(model.join("sub/w.bin"), "v").unwrap();
        let d2 = cache.digest_path(&model).unwrap();
        assert_ne!(d1, d2);
        std::fs::rename(model.join("sub/w.bin"), model.join("sub/x.bin")).unwrap();
        assert_ne!(cache.digest_path(&model).unwrap(), d2, "names count too");
    }
}
