//! `answers`: one answer per prompt from a model — greedy by default — for
//! held-out evaluation (`grm-winrate`) and for `scir export --model-answers`.
//!
//! Unlike `generate` (n samples of iteration k's slice, paired for
//! training), this takes *every* row of the prompts table (all slices; the
//! first `limit` in id order) and writes one answer each. A prompt is one
//! user message in the model's chat template; [`answering::answer_chats`] also answers
//! multi-turn conversations (MT-Bench's second turn). Rows are batched by
//! prompt length (speed only: each row's tokens depend only on its prompt,
//! its seed and the model), and sampling, when asked for, uses one seed per
//! row derived from the task seed and the prompt id.
//!
//! Writes [`answers`](crate::tables::answers).

use serde::{Deserialize, Serialize};

use super::common;
use super::common::answering::{self, AnswerSettings};
use super::common::slots;
use crate::engine::stage::{DeclaredTable, ParamError, Slot, Stage, TaskContext};
use crate::model::generate::Sampler;
use crate::model::{Message, Weights};
use crate::table::Table;
use crate::tables::answers::AnswerRow;
use crate::tables::prompts::PromptRow;

/// Params of `answers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswersParams {
    /// Most new tokens per answer.
    pub max_new_tokens: usize,
    /// Sampling temperature (0: greedy).
    pub temperature: f64,
    /// Nucleus mass (sampling only).
    pub top_p: f64,
    /// The prompts table of the `prompts` input.
    pub table: String,
    /// Answer only the first `limit` prompts in id order (`null`: all).
    pub limit: Option<usize>,
    /// Rows generated per batch (speed only).
    pub batch_size: usize,
}

impl Default for AnswersParams {
    fn default() -> Self {
        AnswersParams {
            max_new_tokens: 128,
            temperature: 0.0,
            top_p: 1.0,
            table: "prompts".into(),
            limit: None,
            batch_size: 16,
        }
    }
}

/// The `answers` stage.
pub struct Answers;

impl Stage for Answers {
    type Params = AnswersParams;
    /// Bump when the output changes for the same inputs and params.
    const VERSION: u32 = 4;
    const INPUTS: &'static [Slot] = &[slots::MK, Slot::tables("prompts").by_default("prompts")];
    const TABLES: &'static [DeclaredTable] = &[AnswerRow::declared];
    /// A shard answers a contiguous slice of the prompts (in id order).
    const SHARDABLE: bool = true;

    fn validate(&self, p: &AnswersParams) -> Result<(), ParamError> {
        let bad = |path: &str, message: &str| Err(ParamError::at(path, message));
        if p.max_new_tokens == 0 {
            return bad("max_new_tokens", "must be at least 1");
        }
        if !(p.temperature >= 0.0 && p.temperature.is_finite()) {
            return bad("temperature", "must be 0 (greedy) or a positive number");
        }
        if p.limit == Some(0) {
            return bad("limit", "must be at least 1 (or null for all)");
        }
        Ok(())
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let model = common::load_model(ctx.input("model")?, Weights::Frozen)?;
        let prompts = read_prompts(ctx.input("prompts")?, &p.table, p.limit)?;
        let prompts = prompts[ctx.shard_range(prompts.len())].to_vec();
        let settings = AnswerSettings {
            max_new_tokens: p.max_new_tokens,
            sampler: Sampler::at(p.temperature, p.top_p),
            batch_size: p.batch_size,
            seed: ctx.seed,
        };
        let chats: Vec<Vec<Message>> = prompts
            .iter()
            .map(|(_, t)| vec![Message::user(t.clone())])
            .collect();
        let ids: Vec<i64> = prompts.iter().map(|(id, _)| *id).collect();
        let bar = ctx.progress(chats.len() as u64, "answers");
        let out = answering::answer_chats(&model, &chats, &ids, &settings, &mut |n| bar.inc(n))?;
        bar.finish_and_clear();
        let finished = out.iter().filter(|a| a.finished).count();
        ctx.log(&format!("{} answers, {finished} finished", out.len()));
        let rows = prompts
            .into_iter()
            .zip(out)
            .map(|((prompt_id, prompt), a)| AnswerRow {
                prompt_id,
                prompt,
                prompt_ids: a.prompt_ids,
                text: a.text,
                length: a.token_ids.len() as i32,
                token_ids: a.token_ids,
                finished: a.finished,
            })
            .collect();
        ctx.write_rows(rows)
    }
    /// The shards' answers in shard order (id order).
    fn merge(&self, _p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let rows: Vec<AnswerRow> = ctx.part_rows()?;
        ctx.write_rows(rows)
    }
}

/// `(id, prompt)` of every row of `table`, in id order, the first `limit`.
fn read_prompts(
    input: &crate::engine::stage::InputArtifact,
    table: &str,
    limit: Option<usize>,
) -> anyhow::Result<Vec<(i64, String)>> {
    let mut rows: Vec<(i64, String)> = PromptRow::read_path(input.table(table)?)?
        .into_iter()
        .map(|r| (r.id, r.prompt))
        .collect();
    rows.sort_by_key(|r| r.0);
    rows.truncate(limit.unwrap_or(usize::MAX));
    if rows.is_empty() {
        anyhow::bail!(crate::user_err!(
            "table {table:?} of {} has no prompts to answer",
            input.task
        ));
    }
    Ok(rows)
}
