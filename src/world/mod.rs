//! The built-in synthetic world: a pure, deterministic data generator for the
//! default pipeline (no downloads). Its gold scorer ([`gold`]) is for eval
//! only.
//!
//! The task family: rearrange 6–12 letters (`sort`, `rsort`, `reverse`;
//! [`TaskKind`]). Prompts are plain text, `sort: qwdbe\n`, and the answer is
//! `bdeqw` followed by `<eos>` ([`format`](mod@format)); the tiny model reads them one
//! character per token ([`tokenizer()`]).
//!
//! [`generate`] returns six tables, in this order, each with `iteration`
//! (Int32) and `id` (Int64, the row number, stable for given params) first,
//! then `task` (the keyword) and `prompt`:
//!
//! ```text
//! prompts       iteration 1..=N: the prompt pool, prompts_per_iteration rows per iteration
//! ift           iteration 0: + response, noisy   (instruction demos; a fraction corrupted)
//! eft           iteration 0: + mode (pointwise|pairwise), response_a, response_b (NULL when
//!               pointwise), label (score token "1".."L" or verdict "A"/"B"), noisy (label wrong)
//! judge_prompts iteration 0: the judge-data pool (stage `judge-data` samples a model on it
//!               and gold-labels the samples: the world's stand-in for human-labelled
//!               rankings of model responses)
//! eval_prompts  iteration 0: held-out prompts
//! gold_pairs    iteration 0: + response_a, response_b, gold_a, gold_b, label ("A"/"B")
//!               held-out, gold-labelled: EVAL ONLY, never an input of training
//! ```
//!
//! The pipeline splits them: stage `world` writes the [`TRAINING_TABLES`]
//! (and `world_params`), stage `heldout` the [`HELDOUT_TABLES`], so the
//! held-out sets and the gold labels are never upstream of training.
//!
//! Invariants: every prompt is distinct across all tables (held-out sets are
//! disjoint from training data); the same params give identical batches;
//! each row draws from its own random stream, so changing one count leaves
//! the other tables' rows in place (see [`tables`]).

pub mod format;
pub mod gold;
mod noise;
pub mod params;
pub mod rng;
pub mod tables;
pub mod tokenizer;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

pub use params::{TaskKind, WorldParams};
pub use tokenizer::tokenizer;

/// Generate every table of the world: `(name, batch)` in the order of
/// [`table_schemas`]. Bad params are a user error naming the field.
pub fn generate(p: &WorldParams) -> anyhow::Result<Vec<(String, RecordBatch)>> {
    p.validate()?;
    let mut world = tables::World::new(p);
    // Held-out sets claim their prompts first (see `tables`).
    let eval_prompts = world.eval_prompts()?;
    let gold_pairs = world.gold_pairs()?;
    let prompts = world.prompts()?;
    let ift = world.ift()?;
    let eft = world.eft()?;
    let judge_prompts = world.judge_prompts()?;
    Ok(vec![
        (tables::PROMPTS.to_string(), prompts),
        (tables::IFT.to_string(), ift),
        (tables::EFT.to_string(), eft),
        (tables::JUDGE_PROMPTS.to_string(), judge_prompts),
        (tables::EVAL_PROMPTS.to_string(), eval_prompts),
        (tables::GOLD_PAIRS.to_string(), gold_pairs),
    ])
}

/// The tables a training stage may see (stage `world`).
pub const TRAINING_TABLES: [&str; 4] = [
    tables::PROMPTS,
    tables::IFT,
    tables::EFT,
    tables::JUDGE_PROMPTS,
];
/// The held-out tables, for eval only (stage `heldout`): no training task has
/// them, or the task that makes them, upstream.
pub const HELDOUT_TABLES: [&str; 2] = [tables::EVAL_PROMPTS, tables::GOLD_PAIRS];

/// Name and schema of every table [`generate`] returns, in the same order.
pub fn table_schemas() -> Vec<(String, SchemaRef)> {
    tables::schemas()
}
