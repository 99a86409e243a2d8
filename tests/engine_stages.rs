//! Test-only stages: millisecond-fast, deterministic, and controllable.
//!
//! Every task appends `<task>` to `<pipeline dir>/count` when it starts, so a
//! test can count executions. A file `<pipeline dir>/mode.<task>` makes that
//! task misbehave: `fail`, `panic`, `no_output`, `extra` (an undeclared file),
//! `schema` (a table with the wrong schema), `rewrite` (append to the
//! external `data.txt` while running), `block` (write half a file, touch
//! `reached.<task>`, then hang until killed) or `wait` (touch `reached.<task>`,
//! then wait for `go.<task>`).
//!
//! Kinds: `src` (no inputs; `rows`, `value`, optional external `file`),
//! `add` (`data` → `data` + `add`), `ckpt` (`data` → a checkpoint holding the
//! sum × `scale`), `gen` (`model` checkpoint + `data` → rows shifted by the
//! model's number). All take an unused `note` param (for early-cutoff tests).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Int32Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use scir::engine::stage::{Outputs, Registry, Slot, Stage, StageKind, TaskContext, registry_of};
use serde::{Deserialize, Serialize};

const POLL: Duration = Duration::from_millis(20);

pub fn nums_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("iteration", DataType::Int32, false),
        Field::new("i", DataType::Int32, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

fn nums(k: u32, values: &[i64]) -> anyhow::Result<RecordBatch> {
    let n = values.len();
    let it = Int32Array::from(vec![k as i32; n]);
    let i = Int32Array::from((0..n as i32).collect::<Vec<_>>());
    let v = Int64Array::from(values.to_vec());
    Ok(RecordBatch::try_new(
        nums_schema(),
        vec![Arc::new(it), Arc::new(i), Arc::new(v)],
    )?)
}

fn read_values(path: &Path) -> anyhow::Result<Vec<i64>> {
    let mut out = Vec::new();
    for b in scir::table::read(path)? {
        let v = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        out.extend((0..v.len()).map(|j| v.value(j)));
    }
    Ok(out)
}

fn table_outputs() -> Outputs {
    Outputs {
        tables: vec![("nums".into(), nums_schema())],
        checkpoint: false,
    }
}

/// Count the start and obey `mode.<task>`; `Ok(true)` means "write nothing".
fn control(ctx: &mut TaskContext) -> anyhow::Result<bool> {
    let dir = ctx.pipeline_dir.clone();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("count"))?;
    writeln!(f, "{}", ctx.task)?;
    let mode = std::fs::read_to_string(dir.join(format!("mode.{}", ctx.task))).unwrap_or_default();
    let staging = ctx.scratch_dir()?.parent().unwrap().to_path_buf();
    match mode.trim() {
        "" => Ok(false),
        "fail" => anyhow::bail!("told to fail"),
        "panic" => panic!("told to panic"),
        "no_output" => Ok(true),
        "extra" => {
            std::fs::write(staging.join("stray.txt"), "x")?;
            Ok(false)
        }
        "schema" => {
            let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
            let b = RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![1]))])?;
            scir::table::write(&staging.join("nums.parquet"), &[b])?;
            Ok(true)
        }
        "rewrite" => {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.join("data.txt"))?;
            writeln!(f, "edited while the task ran")?;
            Ok(false)
        }
        "block" => {
            std::fs::write(staging.join("nums.parquet"), b"PAR1 half a file")?;
            touch(&dir.join(format!("reached.{}", ctx.task)));
            loop {
                std::thread::sleep(POLL);
            }
        }
        "wait" => {
            touch(&dir.join(format!("reached.{}", ctx.task)));
            while !dir.join(format!("go.{}", ctx.task)).exists() {
                std::thread::sleep(POLL);
            }
            Ok(false)
        }
        other => anyhow::bail!("unknown test mode {other:?}"),
    }
}

fn touch(path: &Path) {
    std::fs::write(path, "").unwrap();
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SrcParams {
    rows: u32,
    value: i64,
    file: Option<PathBuf>,
    note: String,
}

impl Default for SrcParams {
    fn default() -> Self {
        SrcParams {
            rows: 3,
            value: 1,
            file: None,
            note: String::new(),
        }
    }
}

pub struct Src;

impl Stage for Src {
    const VERSION: u32 = 1;
    type Params = SrcParams;
    fn outputs(&self, _: &Self::Params) -> Outputs {
        table_outputs()
    }
    fn external_files(&self, p: &SrcParams) -> Vec<PathBuf> {
        p.file.iter().cloned().collect()
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        if control(ctx)? {
            return Ok(());
        }
        let extra = match &p.file {
            Some(f) => std::fs::read(ctx.pipeline_dir.join(f))?.len() as i64,
            None => 0,
        };
        let values: Vec<i64> = (0..p.rows as i64).map(|i| p.value + i + extra).collect();
        let batch = nums(ctx.iteration, &values)?;
        ctx.write_table("nums", &batch)
    }
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AddParams {
    add: i64,
    note: String,
}

pub struct Add;

impl Stage for Add {
    const VERSION: u32 = 1;
    type Params = AddParams;
    const INPUTS: &'static [Slot] = &[Slot::tables("data")];
    fn outputs(&self, _: &Self::Params) -> Outputs {
        table_outputs()
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        if control(ctx)? {
            return Ok(());
        }
        let values: Vec<i64> = read_values(ctx.input("data")?.table("nums")?)?
            .iter()
            .map(|v| v + p.add)
            .collect();
        let batch = nums(ctx.iteration, &values)?;
        ctx.write_table("nums", &batch)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CkptParams {
    scale: i64,
    note: String,
}

impl Default for CkptParams {
    fn default() -> Self {
        CkptParams {
            scale: 1,
            note: String::new(),
        }
    }
}

/// A checkpoint stage at version `V` (tests bump it).
pub struct Ckpt<const V: u32>;

impl<const V: u32> Stage for Ckpt<V> {
    const VERSION: u32 = V;
    type Params = CkptParams;
    const INPUTS: &'static [Slot] = &[Slot::tables("data")];
    fn outputs(&self, _: &Self::Params) -> Outputs {
        Outputs {
            tables: Vec::new(),
            checkpoint: true,
        }
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        if control(ctx)? {
            return Ok(());
        }
        let sum: i64 = read_values(ctx.input("data")?.table("nums")?)?.iter().sum();
        let dir = ctx.checkpoint_dir()?;
        std::fs::write(
            dir.join("weights.txt"),
            format!("{}\n", sum * p.scale * i64::from(V)),
        )?;
        Ok(())
    }
}

pub struct Gen;

impl Stage for Gen {
    const VERSION: u32 = 1;
    type Params = AddParams;
    const INPUTS: &'static [Slot] = &[
        Slot::checkpoint("model").by_default("model@k-1"),
        Slot::tables("data"),
    ];
    fn outputs(&self, _: &Self::Params) -> Outputs {
        table_outputs()
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        if control(ctx)? {
            return Ok(());
        }
        let ckpt = ctx.input("model")?.checkpoint.clone().unwrap();
        let w: i64 = std::fs::read_to_string(ckpt.join("weights.txt"))?
            .trim()
            .parse()?;
        let values: Vec<i64> = read_values(ctx.input("data")?.table("nums")?)?
            .iter()
            .map(|v| (v + w + p.add) % 1000)
            .collect();
        let batch = nums(ctx.iteration, &values)?;
        ctx.write_table("nums", &batch)
    }
}

const SRC: StageKind = StageKind::new("src", &Src, "test source");
const ADD: StageKind = StageKind::new("add", &Add, "adds a constant");
const CKPT: StageKind = StageKind::new("ckpt", &Ckpt::<1>, "a checkpoint holding a number");
const CKPT_V2: StageKind = StageKind::new("ckpt", &Ckpt::<2>, "a checkpoint holding a number");
const GEN: StageKind = StageKind::new("gen", &Gen, "shifts rows by the model's number");

fn build(stages: [StageKind; 4]) -> Registry {
    let mut reg: Registry = scir::stages::registry();
    reg.extend(registry_of(stages));
    reg
}

/// The built-in stages plus the test stages.
pub fn registry() -> Registry {
    build([SRC, ADD, CKPT, GEN])
}

/// Same, with `ckpt` at version 2.
pub fn registry_ckpt_v2() -> Registry {
    build([SRC, ADD, CKPT_V2, GEN])
}

/// Registry by name (for child processes).
pub fn registry_named(name: &str) -> Registry {
    match name {
        "ckpt_v2" => registry_ckpt_v2(),
        _ => registry(),
    }
}
