//! `instructions`: a Self-Instruct-style JSONL file as a prompts table.
//!
//! Self-Instruct's seed tasks (`seed_tasks.jsonl`) and its user-oriented
//! instructions (`user_oriented_instructions.jsonl`) hold one task per line; a task's
//! prompt is built as [`super::common::self_instruct`] says. Demonstration outputs are not
//! written here (only `demo-pairs` uses them, as an external RM's preference data).
//!
//! `offset` and `limit` pick a contiguous range of tasks in file order; the
//! picked rows are split into `iterations` contiguous slices (`iteration`
//! 1..=N, as the `prompts` stage does), so `generate@k` takes slice k. The
//! file (relative to the pipeline file) is digested into the key.
//!
//! Writes [`prompts`](crate::tables::prompts) ([`InstructionRow`]: `id` is the 0-based line
//! number, `source_id` the task's `"id"`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::common::self_instruct::{Instruction, read_self_instruct};
use crate::engine::stage::{DeclaredTable, ParamError, Stage, TaskContext};
use crate::table::Table;
use crate::tables::prompts::InstructionRow;
use crate::user_err;

/// Params of `instructions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstructionsParams {
    /// The JSONL file.
    pub path: PathBuf,
    /// Tasks skipped at the start of the file.
    #[serde(default)]
    pub offset: usize,
    /// At most this many tasks after `offset` (`null`: all).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Number of slices (the pipeline's iterations).
    #[serde(default = "one")]
    pub iterations: usize,
}

fn one() -> usize {
    1
}

/// The `instructions` stage.
pub struct Instructions;

impl Stage for Instructions {
    type Params = InstructionsParams;
    /// Bump when the output changes for the same file and params.
    const VERSION: u32 = 1;
    const TABLES: &'static [DeclaredTable] = &[InstructionRow::declared];

    fn validate(&self, p: &InstructionsParams) -> Result<(), ParamError> {
        if p.iterations == 0 {
            return Err(ParamError::at("iterations", "must be at least 1"));
        }
        if p.limit == Some(0) {
            return Err(ParamError::at(
                "limit",
                "must be at least 1 (or null for all)",
            ));
        }
        Ok(())
    }
    fn external_files(&self, p: &InstructionsParams) -> Vec<PathBuf> {
        vec![p.path.clone()]
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let path = ctx.pipeline_dir.join(&p.path);
        let all = read_self_instruct(&path)?;
        let total = all.len();
        let picked: Vec<Instruction> = all
            .into_iter()
            .skip(p.offset)
            .take(p.limit.unwrap_or(usize::MAX))
            .collect();
        let n = picked.len();
        if n < p.iterations {
            anyhow::bail!(user_err!(
                "{}: {n} tasks (of {total}, offset {}) cannot fill {} iterations; lower `offset` \
                 or `iterations`, or raise `limit`",
                path.display(),
                p.offset,
                p.iterations
            ));
        }
        let per = n.div_ceil(p.iterations);
        let iterations = (0..n).map(|i| (i / per) as i32 + 1).collect();
        let rows = picked
            .into_iter()
            .map(|t| InstructionRow {
                id: t.line as i64,
                prompt: t.prompt,
                source_id: t.source_id,
            })
            .collect();
        let batch = InstructionRow::batch_at(iterations, rows)?;
        ctx.log(&format!(
            "{n} of {total} tasks from {} in {} slices",
            path.display(),
            p.iterations
        ));
        ctx.write_table(InstructionRow::NAME, &batch)
    }
}
