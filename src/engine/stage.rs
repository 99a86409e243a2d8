//! The contract every stage implements, and what a running task may touch.
//!
//! A stage kind implements the typed [`Stage`] trait (its params are a serde struct); the
//! engine holds it as a [`StageKind`] (its kind name, one line about it, the implementation
//! as a `&'static dyn DynStage`) in a [`Registry`], and never calls a stage's code except
//! through that trait. The engine takes the registry as a
//! parameter, so tests inject their own stages.
//!
//! ```text
//!   pipeline.yaml params ──DynStage::resolve──▶ Stage::Params (parsed once, validated)
//!                                  │                 │
//!                                  ▼                 ▼
//!                      canonical JSON ──▶ key    bindings, outputs, external files
//!   upstream objects (by input slot) ─────────────┐  │
//!                                                 ▼  ▼
//!                       Stage::run(&Params, &mut TaskContext) ──▶ staging dir
//!                          write_table(name, batch)   → <name>.parquet
//!                          checkpoint_dir()           → checkpoint/
//! ```
//!
//! Invariants the engine enforces after `run` returns `Ok`:
//! every declared table was written with exactly its declared schema (which
//! contains an `iteration` Int32 column), a declared checkpoint directory is
//! non-empty, and nothing undeclared was written at the top of the staging dir.

use std::any::Any;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::shard::Shard;
use crate::table::{self, Table};

/// Name of the checkpoint directory inside an object.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// kind name → registered stage kind.
pub type Registry = BTreeMap<&'static str, StageKind>;

/// A registry of `kinds`, keyed by their names.
pub fn registry_of(kinds: impl IntoIterator<Item = StageKind>) -> Registry {
    kinds.into_iter().map(|k| (k.kind(), k)).collect()
}

/// A registered stage kind: the name `pipeline.yaml` uses for it, one line about it (shown by
/// `scir dag`), and its implementation, which it dereferences to.
#[derive(Clone, Copy)]
pub struct StageKind {
    name: &'static str,
    about: &'static str,
    imp: &'static dyn DynStage,
}

impl StageKind {
    pub const fn new(name: &'static str, imp: &'static dyn DynStage, about: &'static str) -> Self {
        StageKind { name, about, imp }
    }
    /// The kind name used in `pipeline.yaml` (`kind:` or the stage's name); enters the key.
    pub fn kind(&self) -> &'static str {
        self.name
    }
    /// One line describing the stage.
    pub fn about(&self) -> &'static str {
        self.about
    }
}

impl std::ops::Deref for StageKind {
    type Target = dyn DynStage;
    fn deref(&self) -> &Self::Target {
        self.imp
    }
}

impl std::fmt::Debug for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// What an input slot carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// The tables of an upstream task.
    Tables,
    /// The checkpoint directory of an upstream task (a model).
    Checkpoint,
}

/// One named input of a stage kind, with the reference it binds when the pipeline file
/// leaves it unbound.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub name: &'static str,
    pub kind: SlotKind,
    /// The default binding (`model@k-1`, `generate`, …).
    pub default: Option<&'static str>,
    /// May stay unbound: when bound to `STAGE@k-N` (both stages each_iteration) and that
    /// names an iteration before the first, the task simply has no input there (see
    /// [`TaskContext::try_input`]); without a default, whenever the pipeline leaves it
    /// unbound.
    pub optional: bool,
}

impl Slot {
    /// A slot bound to an upstream task's tables.
    pub const fn tables(name: &'static str) -> Slot {
        Slot {
            name,
            kind: SlotKind::Tables,
            default: None,
            optional: false,
        }
    }
    /// A slot bound to a model (an upstream task's checkpoint).
    pub const fn checkpoint(name: &'static str) -> Slot {
        Slot {
            kind: SlotKind::Checkpoint,
            ..Slot::tables(name)
        }
    }
    /// The slot bound to `reference` unless the pipeline file binds it.
    pub const fn by_default(self, reference: &'static str) -> Slot {
        Slot {
            default: Some(reference),
            ..self
        }
    }
    /// The slot may stay unbound (see the `optional` field).
    pub const fn optional(self) -> Slot {
        Slot {
            optional: true,
            ..self
        }
    }
}

/// A table a stage writes, as its typed definition declares it ([`Table::declared`]).
pub type DeclaredTable = fn() -> (String, SchemaRef);

/// What a task of a stage writes.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// Table name → its exact Arrow schema (with an `iteration` column).
    pub tables: Vec<(String, SchemaRef)>,
    /// Whether the task writes a checkpoint directory (Hugging Face layout).
    pub checkpoint: bool,
}

impl Outputs {
    /// Tables only (each `(name, schema)`, e.g. [`Table::declared`]).
    pub fn tables(tables: Vec<(String, SchemaRef)>) -> Outputs {
        Outputs {
            tables,
            checkpoint: false,
        }
    }
}

/// A typed params error: the field path inside `params` and the message.
#[derive(Debug, Clone)]
pub struct ParamError {
    /// Dotted path inside the stage's params (`""` for the params as a whole).
    pub path: String,
    pub message: String,
}

impl ParamError {
    /// An error about the field at `path`.
    pub fn at(path: &str, message: impl Into<String>) -> ParamError {
        ParamError {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// The implementation of one stage kind, with its params as a typed struct.
///
/// Stage authors implement this trait; the engine sees every stage through [`DynStage`],
/// which a blanket impl provides: it parses the YAML params into [`Stage::Params`] once
/// (unknown fields denied, defaults applied), calls [`Stage::validate`], and keeps both the
/// canonical JSON (key material) and the typed value, which every later call receives.
pub trait Stage: Send + Sync + 'static {
    /// The params as written under `params:` (`#[serde(deny_unknown_fields, default)]`).
    type Params: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Bump when the stage's output for the same inputs changes; enters the key.
    const VERSION: u32;
    /// The input slots; every one must be bound (explicitly or by default).
    const INPUTS: &'static [Slot] = &[];
    /// The tables it writes (see [`Stage::outputs`]).
    const TABLES: &'static [DeclaredTable] = &[];
    /// Whether it writes a checkpoint (a model; see [`Stage::outputs`]).
    const CHECKPOINT: bool = false;
    /// Top-level params that do not change the outputs (e.g. how often a training stage
    /// saves resume state): they are left out of the key.
    const UNKEYED_PARAMS: &'static [&'static str] = &[];
    /// Whether `shards: N` may split a task of this stage into N shard tasks (see
    /// [`crate::engine::shard`]): `run` then computes only [`TaskContext::shard_range`] of
    /// its rows, and [`Stage::merge`] combines the shards' tables into exactly the tables
    /// an unsharded `run` writes.
    const SHARDABLE: bool = false;

    /// Checks beyond the types (ranges, combinations); the error names the field.
    fn validate(&self, _params: &Self::Params) -> Result<(), ParamError> {
        Ok(())
    }
    /// Bindings (slot → reference such as `model@k-1`) for slots the YAML leaves unbound:
    /// the slots' defaults unless a stage's depend on its params.
    fn bindings(&self, _params: &Self::Params) -> Vec<(&'static str, String)> {
        Self::INPUTS
            .iter()
            .filter_map(|s| s.default.map(|d| (s.name, d.to_string())))
            .collect()
    }
    /// Declared outputs: [`Stage::TABLES`] and [`Stage::CHECKPOINT`] unless a stage's
    /// depend on its params.
    fn outputs(&self, _params: &Self::Params) -> Outputs {
        Outputs {
            tables: Self::TABLES.iter().map(|declared| declared()).collect(),
            checkpoint: Self::CHECKPOINT,
        }
    }
    /// Files or directories outside the store that the task reads (relative to the
    /// pipeline file's directory, or absolute), e.g. a Hugging Face checkpoint directory;
    /// their content digests enter the key.
    fn external_files(&self, _params: &Self::Params) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Compute the outputs into `ctx`'s staging directory.
    fn run(&self, params: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()>;
    /// Write the outputs from the shards' tables ([`TaskContext::parts`], in shard order),
    /// byte-identical to what `run` writes unsharded. Only called when [`Stage::SHARDABLE`].
    fn merge(&self, _params: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        Err(crate::internal_err!("{}: the stage cannot merge shards", ctx.task).into())
    }
}

/// A stage's resolved params: the canonical JSON that enters the key, and the typed value
/// the stage's own methods receive (parsed once, by [`DynStage::resolve`]).
#[derive(Clone)]
pub struct ResolvedParams {
    /// Canonical JSON of the typed params (defaults applied, field order fixed).
    pub json: serde_json::Value,
    typed: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for ResolvedParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.json.fmt(f)
    }
}

impl ResolvedParams {
    /// The typed params of stage `S` (an internal error if they belong to another kind).
    fn get<S: Stage>(&self) -> anyhow::Result<&S::Params> {
        self.typed.downcast_ref().ok_or_else(|| {
            let stage = std::any::type_name::<S>();
            crate::internal_err!("params handed to stage {stage} are not its own").into()
        })
    }
}

/// A stage as the engine sees it: object-safe, params as [`ResolvedParams`]. Implemented
/// for every [`Stage`]; implement [`Stage`], not this.
pub trait DynStage: Send + Sync {
    fn version(&self) -> u32;
    fn inputs(&self) -> &'static [Slot];
    fn unkeyed_params(&self) -> &'static [&'static str];
    fn shardable(&self) -> bool;
    /// Typed params from the raw YAML value (`null` for none), validated.
    fn resolve(&self, raw: serde_json::Value) -> Result<ResolvedParams, ParamError>;
    fn default_bindings(&self, params: &ResolvedParams) -> Vec<(&'static str, String)>;
    fn outputs(&self, params: &ResolvedParams) -> Outputs;
    fn external_files(&self, params: &ResolvedParams) -> Vec<PathBuf>;
    fn run(&self, params: &ResolvedParams, ctx: &mut TaskContext) -> anyhow::Result<()>;
    fn merge(&self, params: &ResolvedParams, ctx: &mut TaskContext) -> anyhow::Result<()>;
}

impl<S: Stage> DynStage for S {
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn inputs(&self) -> &'static [Slot] {
        S::INPUTS
    }
    fn unkeyed_params(&self) -> &'static [&'static str] {
        S::UNKEYED_PARAMS
    }
    fn shardable(&self) -> bool {
        S::SHARDABLE
    }
    fn resolve(&self, raw: serde_json::Value) -> Result<ResolvedParams, ParamError> {
        let typed: S::Params = parse_params(raw)?;
        self.validate(&typed)?;
        let json = serde_json::to_value(&typed).map_err(|e| ParamError::at("", e.to_string()))?;
        Ok(ResolvedParams {
            json,
            typed: Arc::new(typed),
        })
    }
    fn default_bindings(&self, params: &ResolvedParams) -> Vec<(&'static str, String)> {
        params
            .get::<S>()
            .map(|p| self.bindings(p))
            .unwrap_or_default()
    }
    fn outputs(&self, params: &ResolvedParams) -> Outputs {
        params
            .get::<S>()
            .map(|p| Stage::outputs(self, p))
            .unwrap_or_default()
    }
    fn external_files(&self, params: &ResolvedParams) -> Vec<PathBuf> {
        params
            .get::<S>()
            .map(|p| Stage::external_files(self, p))
            .unwrap_or_default()
    }
    fn run(&self, params: &ResolvedParams, ctx: &mut TaskContext) -> anyhow::Result<()> {
        Stage::run(self, params.get::<S>()?, ctx)
    }
    fn merge(&self, params: &ResolvedParams, ctx: &mut TaskContext) -> anyhow::Result<()> {
        Stage::merge(self, params.get::<S>()?, ctx)
    }
}

/// The params that enter `stage`'s key: `params` without its unkeyed fields.
pub fn keyed_params(stage: &dyn DynStage, params: &serde_json::Value) -> serde_json::Value {
    let mut keyed = params.clone();
    if let Some(obj) = keyed.as_object_mut() {
        for name in stage.unkeyed_params() {
            obj.remove(*name);
        }
    }
    keyed
}

/// Deserialize raw params into `P` (denying unknown fields, applying defaults); the error
/// names the field path.
fn parse_params<P: DeserializeOwned>(raw: serde_json::Value) -> Result<P, ParamError> {
    let raw = if raw.is_null() {
        serde_json::json!({})
    } else {
        raw
    };
    serde_path_to_error::deserialize(raw).map_err(|e| ParamError {
        path: path_string(e.path()),
        message: e.inner().to_string(),
    })
}

fn path_string(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." { String::new() } else { s }
}

/// An upstream artifact as a running task sees it.
#[derive(Debug, Clone)]
pub struct InputArtifact {
    /// The upstream task (`sft@0`).
    pub task: String,
    /// Table name → path of the object's Parquet file.
    pub tables: BTreeMap<String, PathBuf>,
    /// The object's checkpoint directory, when it has one.
    pub checkpoint: Option<PathBuf>,
    /// The params the upstream task ran with (its key material: resolved, defaults applied,
    /// unkeyed fields left out), so a stage follows an upstream setting instead of repeating
    /// it; read them with [`InputArtifact::params_as`].
    pub params: serde_json::Value,
}

impl InputArtifact {
    /// The rows of upstream table `T`.
    pub fn rows<T: Table>(&self) -> anyhow::Result<Vec<T>> {
        T::read_path(self.table(T::NAME)?)
    }

    /// The upstream task's params as its stage's params struct `P`.
    pub fn params_as<P: DeserializeOwned>(&self) -> anyhow::Result<P> {
        serde_json::from_value(self.params.clone()).map_err(|e| {
            crate::internal_err!(
                "{} ran with params this version cannot read: {e}",
                self.task
            )
            .into()
        })
    }

    /// The path of one upstream table, or an error naming what exists.
    pub fn table(&self, name: &str) -> anyhow::Result<&Path> {
        self.tables.get(name).map(PathBuf::as_path).ok_or_else(|| {
            let have: Vec<&str> = self.tables.keys().map(String::as_str).collect();
            anyhow::anyhow!(
                "{} has no table {name:?} (it has: {})",
                self.task,
                have.join(", ")
            )
        })
    }
}

/// A written table, as recorded in the manifest.
#[derive(Debug, Clone)]
pub struct WrittenTable {
    pub rows: u64,
    pub digest: String,
    pub bytes: u64,
}

/// Everything a running task may read and write.
pub struct TaskContext {
    /// `stage@k`.
    pub task: String,
    /// The iteration (0 for stages that run once).
    pub iteration: u32,
    /// The task's derived seed (part of its key).
    pub seed: u64,
    /// Upstream artifacts by input slot.
    pub inputs: BTreeMap<String, InputArtifact>,
    /// The shard this task computes (`None`: all rows, or a merge).
    pub shard: Option<Shard>,
    /// A merge's shards' outputs, in shard order (empty for every other task).
    pub parts: Vec<InputArtifact>,
    /// Directory of the pipeline file (external files are relative to it).
    pub pipeline_dir: PathBuf,
    pub(crate) staging: PathBuf,
    pub(crate) resume: PathBuf,
    pub(crate) declared: Outputs,
    pub(crate) written: BTreeMap<String, WrittenTable>,
    pub(crate) log: File,
    pub(crate) show_progress: bool,
}

impl TaskContext {
    /// The rows of `n` this task computes: its shard's slice, or all of them.
    pub fn shard_range(&self, n: usize) -> std::ops::Range<usize> {
        self.shard.map_or(0..n, |s| s.range(n))
    }

    /// The rows of table `T` of every shard, concatenated in shard order (for a merge).
    pub fn part_rows<T: Table>(&self) -> anyhow::Result<Vec<T>> {
        let mut rows = Vec::new();
        for part in &self.parts {
            rows.extend(part.rows::<T>()?);
        }
        Ok(rows)
    }

    /// The input bound to `slot`.
    pub fn input(&self, slot: &str) -> anyhow::Result<&InputArtifact> {
        self.inputs
            .get(slot)
            .ok_or_else(|| anyhow::anyhow!("{}: no input bound to slot {slot:?}", self.task))
    }

    /// The input bound to `slot`, or `None` for an optional slot left unbound.
    pub fn try_input(&self, slot: &str) -> Option<&InputArtifact> {
        self.inputs.get(slot)
    }

    /// Write one declared table (byte-deterministic Parquet, digested while written).
    pub fn write_table(&mut self, name: &str, batch: &RecordBatch) -> anyhow::Result<()> {
        let Some((_, schema)) = self.declared.tables.iter().find(|(n, _)| n == name) else {
            anyhow::bail!(
                "{}: table {name:?} is not among the stage's declared outputs",
                self.task
            );
        };
        table::check_schema(name, schema, &batch.schema())?;
        if self.written.contains_key(name) {
            anyhow::bail!("{}: table {name:?} written twice", self.task);
        }
        let path = self.staging.join(table::file_name(name));
        let info = table::write(&path, std::slice::from_ref(batch))?;
        self.written.insert(
            name.to_string(),
            WrittenTable {
                rows: info.rows,
                digest: info.digest,
                bytes: info.bytes,
            },
        );
        crate::failpoint::hit(crate::failpoint::site::TABLE_WRITTEN);
        Ok(())
    }

    /// Write table `T` with every row at this task's iteration.
    pub fn write_rows<T: Table>(&mut self, rows: Vec<T>) -> anyhow::Result<()> {
        let batch = T::batch(self.iteration, rows)?;
        self.write_table(T::NAME, &batch)
    }

    /// The directory to write a checkpoint into (created on first call).
    pub fn checkpoint_dir(&self) -> anyhow::Result<PathBuf> {
        if !self.declared.checkpoint {
            anyhow::bail!(
                "{}: the stage does not declare a checkpoint output",
                self.task
            );
        }
        let dir = self.staging.join(CHECKPOINT_DIR);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// The task's resume area (created on first call): a directory keyed by
    /// the task key that survives a crash of the run, so a rerun of the same
    /// key can continue where the killed one stopped (training state). It is
    /// not an output; the engine deletes it after a successful commit, and
    /// `scir gc` removes it only while no run holds the key's lock.
    pub fn resume_dir(&self) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(&self.resume)?;
        Ok(self.resume.clone())
    }

    /// A scratch path inside the staging dir that is not part of the outputs.
    pub fn scratch_dir(&self) -> anyhow::Result<PathBuf> {
        let dir = self.staging.join(SCRATCH_DIR);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Append a line to the task's log file.
    pub fn log(&mut self, line: &str) {
        // A failing log write must not fail the task.
        let _ = writeln!(self.log, "{line}");
    }

    /// A progress bar for `len` steps (hidden when not on a terminal or with --json).
    pub fn progress(&self, len: u64, what: &str) -> ProgressBar {
        if !self.show_progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        let style = ProgressStyle::with_template(PROGRESS_TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(format!("{} {what}", self.task));
        bar
    }
}

/// Scratch space a stage may use; removed before commit.
pub const SCRATCH_DIR: &str = "scratch";
const PROGRESS_TEMPLATE: &str = "{msg:30} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}";
