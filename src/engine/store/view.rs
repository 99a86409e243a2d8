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
use crate::engine::files::{read_dir_sorted, read_json_or_default, walk_files, write_json_atomic};
use crate::engine::layout::Layout;
use crate::table;

/// Public file (relative to the artifacts dir) → key it shows.
type Published = BTreeMap<String, String>;

const TEMP_SUFFIX: &str = "new";

/// One public path and what it must be.
enum Wanted {
    /// A table: the object's file with an `arm` column added.
    Table {
        src: PathBuf,
        digest: String,
        arm: String,
    },
    /// A model: a symlink to the object's checkpoint.
    Link { target: PathBuf },
}

/// Every public path `refs` asks for (relative to the artifacts dir), in refs order, with
/// the key it shows.
fn wanted(store: &Store, refs: &Refs) -> Vec<(String, String, Wanted)> {
    let mut out = Vec::new();
    for (arm, tasks) in refs {
        let manifests: Vec<(&str, &String, _)> = tasks
            .iter()
            .filter_map(|(task, key)| {
                let stage = task.split('@').next().unwrap_or(task);
                store.manifest(key).map(|m| (stage, key, m))
            })
            .collect();
        let mut writers: BTreeMap<(&str, u32), Vec<(&str, &str)>> = BTreeMap::new();
        for (stage, _, m) in &manifests {
            for name in m.tables.keys() {
                let at = (name.as_str(), m.material.iteration);
                writers
                    .entry(at)
                    .or_default()
                    .push((stage, &m.material.kind));
            }
        }
        for (stage, key, manifest) in &manifests {
            let k = manifest.material.iteration;
            for (name, entry) in &manifest.tables {
                let table = Wanted::Table {
                    src: store.layout.object_dir(key).join(&entry.file),
                    digest: manifest.files[&entry.file].digest.clone(),
                    arm: arm.clone(),
                };
                let others = &writers[&(name.as_str(), k)];
                let public = public_table_name(name, (stage, &manifest.material.kind), others);
                out.push((Layout::table_file(&public, k, arm), (*key).clone(), table));
            }
            if let Some(ckpt) = &manifest.checkpoint {
                let link = Wanted::Link {
                    target: Layout::model_link_target(key, ckpt),
                };
                out.push((Layout::model_link(arm, stage, k), (*key).clone(), link));
            }
        }
    }
    out
}

/// The public name of table `table` of a task of `writer` (stage name, kind), when
/// `writers` (this one included) write a table of that name at the same iteration of one
/// arm. One writer keeps the table's own name: the only one, else the one stage named like
/// the table, else the one stage named after its kind; every other publishes
/// `<stage>_<table>` (`-` as `_`). So `sft-ift` beside `sft` publishes
/// `sft_ift_sft_metrics`, and an `instructions` stage named `heldout` beside one named
/// `prompts` publishes `heldout_prompts`.
fn public_table_name(table: &str, writer: (&str, &str), writers: &[(&str, &str)]) -> String {
    // The one writer `rule` picks, if exactly one.
    let unique = |rule: &dyn Fn(&str, &str) -> bool| {
        let mut matching = writers.iter().filter(|w| rule(w.0, w.1));
        match (matching.next(), matching.next()) {
            (Some(&w), None) => Some(w),
            _ => None,
        }
    };
    let owner = if writers.len() == 1 {
        Some(writer)
    } else {
        unique(&|stage, _| stage == table).or_else(|| unique(&|stage, kind| stage == kind))
    };
    if owner == Some(writer) {
        table.to_string()
    } else {
        format!("{}_{table}", writer.0.replace('-', "_"))
    }
}

/// Bring the public view in line with `refs`. With `prune`, public files of
/// tasks no longer in `refs` are removed.
pub fn sync(store: &Store, refs: &Refs, prune: bool) -> anyhow::Result<()> {
    sync_with(store, refs, prune, false)
}

/// [`sync`]; with `force`, every public path is written again, whatever the record of
/// what was published says.
fn sync_with(store: &Store, refs: &Refs, prune: bool, force: bool) -> anyhow::Result<()> {
    let published_path = store.layout.published_path();
    let mut published: Published = read_json_or_default(&published_path)?;
    let before = published.clone();
    let wanted = wanted(store, refs);
    for (rel, key, what) in &wanted {
        let dst = store.root.join(rel);
        if !force && published.get(rel) == Some(key) && dst.exists() {
            continue;
        }
        match what {
            Wanted::Table { src, digest, arm } => publish_table(src, digest, arm, &dst)?,
            Wanted::Link { target } => publish_link(target, &dst)?,
        }
        published.insert(rel.clone(), key.clone());
    }
    if prune {
        let wanted: BTreeSet<&String> = wanted.iter().map(|(rel, ..)| rel).collect();
        let stale: Vec<String> = published
            .keys()
            .filter(|r| !wanted.contains(r))
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

/// A public path that does not show what the refs say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewProblem {
    /// Relative to the artifacts dir.
    pub path: String,
    pub what: String,
}

/// Check the public view against the refs: every path the refs ask for, once published,
/// shows its object byte for byte (tables: the object's file with its `arm` column; models:
/// a link to the object's checkpoint), and nothing else is under `tables/` or `models/`.
/// Not problems: a path the refs ask for that is not published yet (a run killed between
/// updating the refs and publishing; the next run or `--repair` publishes it), a file scir
/// published that the refs no longer ask for (the next full run prunes it; also the files of
/// objects `scir verify --fix` removed), and temp files of an interrupted publish (`*.new`,
/// which readers never see).
pub fn verify(store: &Store) -> anyhow::Result<Vec<ViewProblem>> {
    let refs = store.read_refs()?;
    let wanted = wanted(store, &refs);
    let published: Published = read_json_or_default(&store.layout.published_path())?;
    let mut out = Vec::new();
    let problem = |path: &str, what: String| ViewProblem {
        path: path.to_string(),
        what,
    };
    for (rel, key, what) in &wanted {
        if published.get(rel) != Some(key) {
            continue;
        }
        if let Some(p) = check(&store.root.join(rel), key, what)? {
            out.push(problem(rel, p));
        }
    }
    for rel in strays(store, &wanted, &published)? {
        out.push(problem(
            &rel,
            "stray: no task in the refs publishes it".into(),
        ));
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Public paths scir did not publish: neither asked for by the refs, nor recorded as
/// published (those the next full run prunes), nor a temp file of an interrupted publish.
fn strays(
    store: &Store,
    wanted: &[(String, String, Wanted)],
    published: &Published,
) -> anyhow::Result<Vec<String>> {
    let wanted: BTreeSet<&String> = wanted.iter().map(|(rel, ..)| rel).collect();
    Ok(public_paths(store)?
        .into_iter()
        .filter(|rel| {
            let temp = rel.ends_with(&format!(".{TEMP_SUFFIX}"));
            !wanted.contains(rel) && !published.contains_key(rel) && !temp
        })
        .collect())
}

/// What is wrong with the public `path` that should show `what` of object `key`.
fn check(path: &Path, key: &str, what: &Wanted) -> anyhow::Result<Option<String>> {
    let short = crate::engine::cache::short_key(key);
    let Ok(meta) = path.symlink_metadata() else {
        return Ok(Some(format!("missing (object {short})")));
    };
    Ok(match what {
        Wanted::Table { src, digest, arm } => {
            let expected = match published_batches(src, digest, arm) {
                Ok(batches) => table::describe_write(&batches)?.digest,
                Err(e) => {
                    return Ok(Some(format!(
                        "cannot be checked: object {short} is damaged ({e:#}); run `scir \
                         verify --fix`, then `scir run`"
                    )));
                }
            };
            let actual = table::digest_file(path).ok();
            (!meta.is_file() || actual.as_deref() != Some(expected.as_str()))
                .then(|| format!("differs from what object {short} publishes"))
        }
        Wanted::Link { target } => match std::fs::read_link(path) {
            Ok(t) if t == *target => None,
            Ok(t) => Some(format!(
                "links to {} instead of object {short}'s checkpoint",
                t.display()
            )),
            Err(_) => Some(format!("is not a link to object {short}'s checkpoint")),
        },
    })
}

/// Every path under `tables/` (files) and `models/` (entries of the arm directories, links
/// not followed), relative to the artifacts dir.
fn public_paths(store: &Store) -> anyhow::Result<Vec<String>> {
    let rel = |p: &Path| {
        p.strip_prefix(&store.root)
            .map(|r| r.display().to_string())
            .unwrap_or_default()
    };
    let mut out: Vec<String> = walk_files(&store.layout.tables_dir())?
        .iter()
        .map(|p| rel(p))
        .collect();
    for arm in read_dir_sorted(&store.layout.models_dir())? {
        if arm.symlink_metadata()?.is_dir() {
            out.extend(read_dir_sorted(&arm)?.iter().map(|p| rel(p)));
        } else {
            out.push(rel(&arm));
        }
    }
    Ok(out)
}

/// Repair the public view from the store without running anything: strays removed, every
/// path the refs ask for written again.
pub fn repair(store: &Store) -> anyhow::Result<()> {
    let refs = store.read_refs()?;
    let published: Published = read_json_or_default(&store.layout.published_path())?;
    for rel in strays(store, &wanted(store, &refs), &published)? {
        let path = store.root.join(&rel);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    sync_with(store, &refs, true, true)
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(TEMP_SUFFIX);
    path.with_file_name(name)
}

/// The batches of a public table: the object's file (verified against `digest`) with a
/// constant `arm` column.
fn published_batches(
    src: &Path,
    digest: &str,
    arm: &str,
) -> anyhow::Result<Vec<arrow::record_batch::RecordBatch>> {
    let mut batches = table::read_verified(src, digest)?;
    if batches.is_empty() {
        batches.push(arrow::record_batch::RecordBatch::new_empty(
            table::schema_of(src)?,
        ));
    }
    batches
        .iter()
        .map(|b| table::with_constant_str(b, "arm", arm))
        .collect()
}

fn publish_table(src: &Path, digest: &str, arm: &str, dst: &Path) -> anyhow::Result<()> {
    let with_arm = published_batches(src, digest, arm)?;
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

#[cfg(test)]
mod tests {
    use super::public_table_name;

    /// (table, its writers as (stage, kind), what each writer publishes).
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
    );

    #[test]
    fn colliding_tables_keep_one_plain_name_and_prefix_the_others() {
        let cases: [Case; 4] = [
            ("sft_metrics", &[("sft", "sft")], &["sft_metrics"]),
            (
                "sft_metrics",
                &[("sft-ift", "sft"), ("sft", "sft")],
                &["sft_ift_sft_metrics", "sft_metrics"],
            ),
            // The stage named like the table wins over one named after its kind.
            (
                "prompts",
                &[("heldout", "instructions"), ("prompts", "instructions")],
                &["heldout_prompts", "prompts"],
            ),
            // No unique owner: every writer is prefixed, none hides another.
            (
                "eft",
                &[("a", "world"), ("b", "world")],
                &["a_eft", "b_eft"],
            ),
        ];
        for (table, writers, want) in cases {
            for (writer, want) in writers.iter().zip(want) {
                assert_eq!(public_table_name(table, *writer, writers), *want);
            }
        }
    }
}
