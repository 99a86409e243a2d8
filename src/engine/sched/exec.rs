//! Running one task: staging dir → stage → output checks → manifest → commit.

use std::collections::BTreeMap;
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::engine::cache::KeyMaterial;
use crate::engine::dag::Node;
use crate::engine::stage::{CHECKPOINT_DIR, InputArtifact, SCRATCH_DIR, TaskContext, WrittenTable};
use crate::engine::store::{Committed, FileEntry, Manifest, Store, TableEntry, finish_manifest};
use crate::table;

/// What the executor needs besides the node.
pub struct TaskRun<'a> {
    pub store: &'a Store,
    pub run_id: &'a str,
    pub node: &'a Node,
    pub material: &'a KeyMaterial,
    pub key: &'a str,
    /// Slot → upstream manifest.
    pub inputs: BTreeMap<String, &'a Manifest>,
    /// A merge's shard objects, in shard order (empty for every other task).
    pub parts: Vec<&'a Manifest>,
    pub pipeline_dir: &'a Path,
    pub log: PathBuf,
    pub show_progress: bool,
    pub replace: bool,
}

/// Run the task and commit its object; returns the committed manifest.
pub fn execute(t: &TaskRun) -> anyhow::Result<Manifest> {
    verify_inputs(t)?;
    let staging =
        t.store
            .layout
            .tmp_dir()
            .join(t.run_id)
            .join(format!("{}-{}", t.node.task, &t.key[..8]));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    crate::failpoint::set_task(&format!("{} {}", t.node.task, t.node.arms[0]));
    crate::failpoint::hit(crate::failpoint::site::TASK_START);
    let log = File::create(&t.log).with_context(|| format!("creating {}", t.log.display()))?;
    let mut ctx = TaskContext {
        task: t.node.task.clone(),
        iteration: t.node.iteration,
        seed: t.node.seed,
        inputs: t
            .inputs
            .iter()
            .map(|(slot, m)| (slot.clone(), artifact(t.store, m)))
            .collect(),
        shard: t.node.shard,
        parts: t.parts.iter().map(|m| artifact(t.store, m)).collect(),
        pipeline_dir: t.pipeline_dir.to_path_buf(),
        staging: staging.clone(),
        resume: t.store.layout.resume_dir(t.key),
        declared: t.node.spec.outputs.clone(),
        written: BTreeMap::new(),
        log,
        show_progress: t.show_progress,
    };
    let started = Instant::now();
    let (stage, params) = (&t.node.spec.stage, &t.node.spec.params);
    let result = catch_unwind(AssertUnwindSafe(|| {
        if t.parts.is_empty() {
            stage.run(params, &mut ctx)
        } else {
            stage.merge(params, &mut ctx)
        }
    }))
    .unwrap_or_else(|panic| {
        Err(anyhow::anyhow!(
            "the stage panicked: {}",
            panic_message(&panic)
        ))
    });
    let result = result
        .and_then(|()| check_outputs(&mut ctx))
        .and_then(|()| check_externals(t));
    if let Err(e) = result {
        ctx.log(&format!("error: {e:#}"));
        return Err(e.context(format!("{} failed (log: {})", t.node.task, t.log.display())));
    }
    let mut manifest = Manifest {
        key: t.key.to_string(),
        task: t.node.task.clone(),
        material: t.material.clone(),
        files: BTreeMap::new(),
        tables: BTreeMap::new(),
        checkpoint: None,
        output_digest: String::new(),
        run_id: t.run_id.to_string(),
        seconds: started.elapsed().as_secs_f64(),
        scir_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: crate::engine::runlog::now_rfc3339(),
    };
    for (name, w) in &ctx.written {
        let file = table::file_name(name);
        manifest.files.insert(
            file.clone(),
            FileEntry {
                digest: w.digest.clone(),
                bytes: w.bytes,
            },
        );
        manifest
            .tables
            .insert(name.clone(), TableEntry { file, rows: w.rows });
    }
    let manifest = finish_manifest(&staging, manifest)?;
    let committed = t.store.commit(&staging, t.key, t.replace)?;
    // The object exists now: the resume state is garbage (still under the key's lock).
    let _ = std::fs::remove_dir_all(t.store.layout.resume_dir(t.key));
    match committed {
        Committed::Ours => Ok(manifest),
        Committed::Theirs => t
            .store
            .manifest(t.key)
            .ok_or_else(|| anyhow::anyhow!("object {} vanished after a concurrent commit", t.key)),
    }
}

/// Re-hash the input objects: a damaged object is never fed downstream.
fn verify_inputs(t: &TaskRun) -> anyhow::Result<()> {
    let parts = t.parts.iter().enumerate();
    let all = (t.inputs.iter().map(|(s, m)| (s.clone(), *m)))
        .chain(parts.map(|(i, m)| (format!("shard {}", i + 1), *m)));
    for (slot, m) in all {
        if let Some(p) = crate::engine::store::maintain::verify_object(t.store, &m.key)?.first() {
            anyhow::bail!(
                "{}: input {slot} ({}, object {}) is damaged: {}; it was not used. Run `scir \
                 verify --fix` to remove damaged objects, then run again",
                t.node.task,
                m.task,
                crate::engine::cache::short_key(&m.key),
                p.what
            );
        }
    }
    Ok(())
}

/// How a running task sees object `m`.
fn artifact(store: &Store, m: &Manifest) -> InputArtifact {
    let dir = store.layout.object_dir(&m.key);
    InputArtifact {
        task: m.task.clone(),
        tables: m
            .tables
            .iter()
            .map(|(n, e)| (n.clone(), dir.join(&e.file)))
            .collect(),
        checkpoint: m.checkpoint.as_ref().map(|c| dir.join(c)),
        params: m.material.params.clone(),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

/// Every declared output is there with its declared schema, nothing
/// undeclared is (an exit without error is not enough). Tables a stage wrote
/// directly (not through `write_table`) are digested here.
fn check_outputs(ctx: &mut TaskContext) -> anyhow::Result<()> {
    let scratch = ctx.staging.join(SCRATCH_DIR);
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    let mut missing = Vec::new();
    for (name, schema) in &ctx.declared.tables {
        let path = ctx.staging.join(table::file_name(name));
        if !path.is_file() {
            missing.push(name.as_str());
            continue;
        }
        let actual = table::schema_of(&path)?;
        table::check_schema(name, schema, &actual)?;
        if !ctx.written.contains_key(name) {
            let info = table::inspect(&path)?;
            let written = WrittenTable {
                rows: info.rows,
                digest: info.digest,
                bytes: info.bytes,
            };
            ctx.written.insert(name.clone(), written);
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "the stage finished without writing its declared table(s): {}",
            missing.join(", ")
        );
    }
    let ckpt = ctx.staging.join(CHECKPOINT_DIR);
    if ctx.declared.checkpoint && crate::engine::files::walk_files(&ckpt)?.is_empty() {
        anyhow::bail!("the stage finished without writing its declared checkpoint");
    }
    let allowed: Vec<String> = ctx
        .written
        .keys()
        .map(|n| table::file_name(n))
        .chain(ctx.declared.checkpoint.then(|| CHECKPOINT_DIR.to_string()))
        .collect();
    for entry in crate::engine::files::read_dir_sorted(&ctx.staging)? {
        let name = entry
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !allowed.contains(&name) {
            anyhow::bail!("the stage wrote {name:?}, which is not a declared output");
        }
    }
    Ok(())
}

/// External files must not change while the task reads them.
fn check_externals(t: &TaskRun) -> anyhow::Result<()> {
    for (name, path) in &t.node.spec.externals {
        let now = t.store.stat.digest_path(path)?;
        if t.material.externals.get(name) != Some(&now) {
            anyhow::bail!("{name} changed while the task ran; its outputs are not committed");
        }
    }
    Ok(())
}
