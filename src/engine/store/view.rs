//! The public view: what `scir sql`, datafusion-cli, pandas and duckdb read.
//!
//! ```text
//! artifacts/tables/<table>/iter-NNNN.<arm>.parquet   object table + constant `arm` column
//! artifacts/models/<arm>/<stage>@<k>                 relative symlink to an object's checkpoint
//! ```
//!
//! Objects do not contain `arm` (identical tasks of several arms share one
//! object); the view adds it. Files are written under a temp name that does
//! not end in `.parquet` (a DataFusion listing table would read a truncated
//! `.parquet` file, hidden or not) and renamed into place, so a concurrent
//! query sees the old file or the new one. `published.json` remembers which
//! key each public file shows, so an up-to-date view costs no writes. Call
//! [`sync`] under the global lock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{Refs, Store};
use crate::engine::files::{read_json_or_default, write_json_atomic};
use crate::engine::layout::Layout;
use crate::table;

/// Public file (relative to the artifacts dir) → key it shows.
type Published = BTreeMap<String, String>;

const TEMP_SUFFIX: &str = "new";

/// Bring the public view in line with `refs`. With `prune`, public files of
/// tasks no longer in `refs` are removed.
pub fn sync(store: &Store, refs: &Refs, prune: bool) -> anyhow::Result<()> {
    let published_path = store.layout.published_path();
    let mut published: Published = read_json_or_default(&published_path)?;
    let before = published.clone();
    let mut wanted = BTreeSet::new();
    for (arm, tasks) in refs {
        for (task, key) in tasks {
            let Some(manifest) = store.manifest(key) else {
                continue;
            };
            let k = manifest.material.iteration;
            let stage = task.split('@').next().unwrap_or(task);
            for (name, entry) in &manifest.tables {
                let rel = Layout::table_file(name, k, arm);
                wanted.insert(rel.clone());
                if published.get(&rel) == Some(key) && store.root.join(&rel).exists() {
                    continue;
                }
                let src = store.layout.object_dir(key).join(&entry.file);
                let digest = &manifest.files[&entry.file].digest;
                publish_table(&src, digest, arm, &store.root.join(&rel))?;
                published.insert(rel, key.clone());
            }
            if let Some(ckpt) = &manifest.checkpoint {
                let rel = Layout::model_link(arm, stage, k);
                wanted.insert(rel.clone());
                if published.get(&rel) == Some(key) && store.root.join(&rel).exists() {
                    continue;
                }
                let target = Layout::model_link_target(key, ckpt);
                publish_link(&target, &store.root.join(&rel))?;
                published.insert(rel, key.clone());
            }
        }
    }
    if prune {
        let stale: Vec<String> = published
            .keys()
            .filter(|r| !wanted.contains(*r))
            .cloned()
            .collect();
        for rel in stale {
            let path = store.root.join(&rel);
            if path.symlink_metadata().is_ok() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
            published.remove(&rel);
        }
    }
    if published != before {
        write_json_atomic(&published_path, &published)?;
    }
    Ok(())
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(TEMP_SUFFIX);
    path.with_file_name(name)
}

fn publish_table(src: &Path, digest: &str, arm: &str, dst: &Path) -> anyhow::Result<()> {
    let mut batches = table::read_verified(src, digest)?;
    if batches.is_empty() {
        batches.push(arrow::record_batch::RecordBatch::new_empty(
            table::schema_of(src)?,
        ));
    }
    let with_arm: Vec<_> = batches
        .iter()
        .map(|b| table::with_constant_str(b, "arm", arm))
        .collect::<Result<_, _>>()?;
    std::fs::create_dir_all(dst.parent().expect("public tables live in a table dir"))?;
    let tmp = temp_name(dst);
    table::write(&tmp, &with_arm)?;
    crate::failpoint::hit(crate::failpoint::site::VIEW_FILE);
    std::fs::rename(&tmp, dst).with_context(|| format!("publishing {}", dst.display()))?;
    Ok(())
}

fn publish_link(target: &Path, dst: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dst.parent().expect("model links live in an arm dir"))?;
    let tmp = temp_name(dst);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    crate::failpoint::hit(crate::failpoint::site::VIEW_FILE);
    std::fs::rename(&tmp, dst).with_context(|| format!("publishing {}", dst.display()))?;
    Ok(())
}
