//! The object store: immutable committed task outputs, refs, atomic commit.
//!
//! Where the store lives under the artifacts directory: [`super::layout`].
//!
//! Commit protocol ([`Store::commit`]): the stage writes into a staging dir;
//! the engine checks every declared output (present, declared schema, nothing
//! undeclared), fsyncs the files, writes `manifest.json` (key material, files
//! with digests, rows) last and fsyncs it, makes the files read-only, then
//! `rename`s the staging dir to `objects/<ab>/<key>` and fsyncs the parent. An
//! object directory exists only complete; a killed run leaves at most a
//! staging dir under `tmp/` (removed by `scir gc`). A task is fresh iff its
//! object's manifest exists and parses.

use super::files::{
    fsync_dir, read_dir_sorted, read_json_or_default, walk_files, write_json_atomic,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::layout::Layout;
use crate::engine::cache::statcache::StatCache;
use crate::engine::cache::{self, KeyMaterial};

pub mod maintain;
pub mod view;

/// The manifest file of an object.
pub const MANIFEST: &str = "manifest.json";
/// Environment variable naming a failpoint at which the process stops (tests).
pub use crate::failpoint::FAILPOINT_ENV;
const READ_ONLY_MODE: u32 = 0o444;

/// One committed file of an object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub digest: String,
    pub bytes: u64,
}

/// One table of an object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableEntry {
    pub file: String,
    pub rows: u64,
}

/// `manifest.json`: what an object is and how it was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub key: String,
    pub task: String,
    pub material: KeyMaterial,
    /// Relative path → digest and size, for every committed file.
    pub files: BTreeMap<String, FileEntry>,
    pub tables: BTreeMap<String, TableEntry>,
    /// Relative path of the checkpoint directory, when there is one.
    pub checkpoint: Option<String>,
    /// Digest over `files` (what downstream keys see).
    pub output_digest: String,
    pub run_id: String,
    pub seconds: f64,
    pub scir_version: String,
    pub created_at: String,
}

/// `refs.json`: arm → task → key.
pub type Refs = BTreeMap<String, BTreeMap<String, String>>;

/// An artifacts directory.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
    /// The artifacts directory's paths.
    pub layout: Layout,
    /// Digests of external files (see [`crate::engine::cache::statcache`]).
    pub stat: Arc<StatCache>,
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Our staging dir became the object.
    Ours,
    /// Another run committed the same key first; ours was dropped.
    Theirs,
}

impl Store {
    /// The store at `root` (nothing is created until [`Store::init`]).
    pub fn new(root: &Path) -> Store {
        let layout = Layout::new(root);
        let stat = StatCache::new(layout.statcache_path());
        Store {
            root: root.to_path_buf(),
            layout,
            stat: Arc::new(stat),
        }
    }

    /// Create the directory skeleton.
    pub fn init(&self) -> anyhow::Result<()> {
        for dir in [
            self.layout.objects_dir(),
            self.layout.tmp_dir(),
            self.layout.runs_dir(),
            self.layout.locks_dir(),
        ] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// The manifest of object `key`, if it is committed and readable.
    pub fn manifest(&self, key: &str) -> Option<Manifest> {
        let text = std::fs::read_to_string(self.layout.object_dir(key).join(MANIFEST)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Keys of every object directory present.
    pub fn object_keys(&self) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        for shard in read_dir_sorted(&self.layout.objects_dir())? {
            for entry in read_dir_sorted(&shard)? {
                if let Some(name) = entry.file_name() {
                    keys.push(name.to_string_lossy().into_owned());
                }
            }
        }
        Ok(keys)
    }

    /// Commit a checked staging dir whose manifest is already written.
    /// `replace` swaps out an existing object of the same key (`--force`).
    pub fn commit(&self, staging: &Path, key: &str, replace: bool) -> anyhow::Result<Committed> {
        make_read_only(staging)?;
        fsync_dir(staging)?;
        let target = self.layout.object_dir(key);
        let parent = target.parent().expect("object dirs have a shard parent");
        std::fs::create_dir_all(parent)?;
        failpoint(crate::failpoint::site::BEFORE_COMMIT);
        if target.exists() {
            if !replace {
                std::fs::remove_dir_all(staging).ok();
                return Ok(Committed::Theirs);
            }
            let old = staging.with_extension("replaced");
            std::fs::rename(&target, &old)?;
            std::fs::rename(staging, &target)?;
            std::fs::remove_dir_all(&old).ok();
        } else if let Err(e) = std::fs::rename(staging, &target) {
            if target.join(MANIFEST).exists() {
                std::fs::remove_dir_all(staging).ok();
                return Ok(Committed::Theirs);
            }
            return Err(e).with_context(|| format!("committing {}", target.display()));
        }
        fsync_dir(parent)?;
        failpoint(crate::failpoint::site::AFTER_COMMIT);
        Ok(Committed::Ours)
    }

    /// Read `refs.json` (empty when absent).
    pub fn read_refs(&self) -> anyhow::Result<Refs> {
        read_json_or_default(&self.layout.refs_path())
    }

    /// Replace `refs.json` atomically. Call under the global lock.
    pub fn write_refs(&self, refs: &Refs) -> anyhow::Result<()> {
        if self.layout.refs_path().exists() && self.read_refs().ok().as_ref() == Some(refs) {
            return Ok(());
        }
        write_json_atomic(&self.layout.refs_path(), refs)
    }
}

/// Write the manifest of a staging dir (fsynced) after hashing its checkpoint
/// files; `tables` are already digested by the writer.
pub fn finish_manifest(staging: &Path, mut manifest: Manifest) -> anyhow::Result<Manifest> {
    failpoint(crate::failpoint::site::BEFORE_MANIFEST);
    let ckpt = staging.join(crate::engine::stage::CHECKPOINT_DIR);
    if ckpt.is_dir() {
        for file in walk_files(&ckpt)? {
            let rel = file
                .strip_prefix(staging)?
                .to_string_lossy()
                .replace('\\', "/");
            File::open(&file)?.sync_all()?;
            let bytes = std::fs::metadata(&file)?.len();
            manifest.files.insert(
                rel,
                FileEntry {
                    digest: crate::table::digest_file(&file)?,
                    bytes,
                },
            );
        }
        fsync_dir(&ckpt)?;
        manifest.checkpoint = Some(crate::engine::stage::CHECKPOINT_DIR.to_string());
    }
    let digests = manifest
        .files
        .iter()
        .map(|(k, v)| (k.clone(), v.digest.clone()))
        .collect();
    manifest.output_digest = cache::output_digest(&digests);
    let path = staging.join(MANIFEST);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)? + "\n")?;
    File::open(&path)?.sync_all()?;
    Ok(manifest)
}

fn make_read_only(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for file in walk_files(dir)? {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(READ_ONLY_MODE))?;
    }
    Ok(())
}

/// Stop the process when `SCIR_FAILPOINT` names this point (see [`crate::failpoint`]).
pub fn failpoint(name: &str) {
    crate::failpoint::hit(name);
}
