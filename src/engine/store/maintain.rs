//! `scir verify` and `scir gc`: re-hash objects; drop what nothing needs.
//!
//! GC roots are the keys in `refs.json`. A live run may rely on objects that
//! are not (yet) roots (a hit it is about to feed downstream, an object of
//! another pipeline sharing the store), so objects are collected only while no
//! run is alive (every `runs/<id>/run.lock` free); otherwise gc only removes
//! staging dirs. Staging dirs `tmp/<run-id>/` are removed only when that run's
//! `run.lock` is free (the run is over or dead), resume dirs `resume/<key>/`
//! only when that key's lock is free (no run is computing the task; the
//! progress of a killed task is dropped). GC runs under the global lock.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{MANIFEST, Manifest, Store};
use crate::engine::files::{read_dir_sorted, walk_files};
use crate::engine::lock;
use crate::table::digest_file;

/// A problem found by [`verify`].
#[derive(Debug, Clone)]
pub struct Problem {
    pub key: String,
    pub what: String,
}

/// Re-hash every file of every object against its manifest.
pub fn verify(store: &Store) -> anyhow::Result<(usize, Vec<Problem>)> {
    let keys = store.object_keys()?;
    let mut problems = Vec::new();
    for key in &keys {
        problems.extend(verify_object(store, key)?);
    }
    Ok((keys.len(), problems))
}

/// Problems of one object (empty when it is intact).
pub fn verify_object(store: &Store, key: &str) -> anyhow::Result<Vec<Problem>> {
    let dir = store.layout.object_dir(key);
    let problem = |what: String| Problem {
        key: key.to_string(),
        what,
    };
    let text = match std::fs::read_to_string(dir.join(MANIFEST)) {
        Ok(t) => t,
        Err(e) => return Ok(vec![problem(format!("manifest unreadable: {e}"))]),
    };
    let manifest: Manifest = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => return Ok(vec![problem(format!("manifest does not parse: {e}"))]),
    };
    let mut out = Vec::new();
    if manifest.key != key || manifest.material.key() != key {
        out.push(problem(
            "manifest's key material does not hash to the object's key".into(),
        ));
    }
    for (rel, entry) in &manifest.files {
        let path = dir.join(rel);
        match digest_file(&path) {
            Ok(d) if d == entry.digest => {}
            Ok(d) => out.push(problem(format!(
                "{rel}: digest {d}, manifest says {}",
                entry.digest
            ))),
            Err(e) => out.push(problem(format!("{rel}: {e:#}"))),
        }
    }
    let listed: BTreeSet<PathBuf> = manifest.files.keys().map(|r| dir.join(r)).collect();
    for file in walk_files(&dir)? {
        if file != dir.join(MANIFEST) && !listed.contains(&file) {
            out.push(problem(format!("{}: not in the manifest", file.display())));
        }
    }
    Ok(out)
}

/// Move a corrupt object out of the store (it is recomputed on the next run).
pub fn quarantine(store: &Store, key: &str) -> anyhow::Result<()> {
    let dir = store.layout.object_dir(key);
    let aside = store.layout.tmp_dir().join(format!("corrupt-{key}"));
    let _ = std::fs::remove_dir_all(&aside);
    std::fs::create_dir_all(store.layout.tmp_dir())?;
    std::fs::rename(&dir, &aside)?;
    std::fs::remove_dir_all(&aside)?;
    Ok(())
}

/// What [`gc`] removed.
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub objects: usize,
    pub tmp_dirs: usize,
    /// Resume dirs of tasks no run is computing.
    pub resume_dirs: usize,
    pub bytes: u64,
    pub kept: usize,
    /// A live run that kept gc from collecting objects.
    pub live_run: Option<String>,
}

/// Remove objects not in refs and staging dirs of finished runs.
/// Call under the global lock.
pub fn gc(store: &Store, dry_run: bool) -> anyhow::Result<GcReport> {
    let refs = store.read_refs()?;
    let roots: BTreeSet<&String> = refs.values().flat_map(|t| t.values()).collect();
    let mut report = GcReport {
        live_run: live_run(store)?,
        ..GcReport::default()
    };
    for key in store.object_keys()? {
        if roots.contains(&key) || report.live_run.is_some() {
            report.kept += 1;
            continue;
        }
        let dir = store.layout.object_dir(&key);
        report.bytes += dir_bytes(&dir);
        report.objects += 1;
        if !dry_run {
            std::fs::remove_dir_all(&dir)?;
        }
    }
    for entry in read_dir_sorted(&store.layout.tmp_dir())? {
        let name = entry
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let run_lock = store.layout.runs_dir().join(&name).join(RUN_LOCK);
        if lock::is_held(&run_lock) {
            continue;
        }
        report.bytes += dir_bytes(&entry);
        report.tmp_dirs += 1;
        if !dry_run {
            std::fs::remove_dir_all(&entry)?;
        }
    }
    for entry in read_dir_sorted(&store.layout.resume_root())? {
        let key = entry.file_name().unwrap_or_default().to_string_lossy();
        if lock::is_held(&store.layout.key_lock(&key)) {
            continue;
        }
        report.bytes += dir_bytes(&entry);
        report.resume_dirs += 1;
        if !dry_run {
            std::fs::remove_dir_all(&entry)?;
        }
    }
    Ok(report)
}

/// The id of some run that is alive now.
fn live_run(store: &Store) -> anyhow::Result<Option<String>> {
    for dir in read_dir_sorted(&store.layout.runs_dir())? {
        if lock::is_held(&dir.join(RUN_LOCK)) {
            return Ok(dir.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

/// The lock file a run holds for its whole life.
pub const RUN_LOCK: &str = "run.lock";

fn dir_bytes(dir: &std::path::Path) -> u64 {
    walk_files(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}
