//! `generate@k`: Mt writes `n` responses per prompt of iteration k's prompt
//! slice and forms unlabeled pairs.
//!
//! Prompts are the rows of the input table (default `prompts`) whose
//! `iteration` is k; each is wrapped as one user message in the model's chat
//! template (plain text with special tokens when it has none) and encoded
//! once; those ids are stored and every later stage reuses them. Sampling uses
//! one seed per row, derived from the task seed, the prompt id and the sample
//! index, so the output does not depend on batch size or threads.
//!
//! Pairs: `all` (every unordered pair of a prompt's samples, `n(n−1)/2`) or
//! `disjoint` (a seeded shuffle of the samples paired off, `⌊n/2⌋`). A pair of
//! identical token ids is dropped and counted (its id is not reused).
//!
//! Writes [`responses`](crate::tables::responses), [`pairs`](crate::tables::pairs) and
//! [`generate_stats`](crate::tables::generate_stats).

use serde::{Deserialize, Serialize};

use super::common::slots;
use super::common::{self, answering::row_seed};
use crate::engine::stage::{DeclaredTable, ParamError, Slot, Stage, TaskContext};
use crate::model::generate::{GenerateParams, Generated, Sampler, generate};
use crate::model::{Adapters, Message, Weights};
use crate::table::Table;
use crate::tables::generate_stats::GenerateStatsRow;
use crate::tables::pairs::PairRow;
use crate::tables::prompts::PromptRow;
use crate::tables::responses::ResponseRow;

/// How responses of one prompt are paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairMode {
    /// Every unordered pair.
    All,
    /// Random disjoint pairs.
    Disjoint,
}

/// Params of `generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateStageParams {
    /// Responses per prompt (≥ 2).
    pub samples: usize,
    /// Sampling temperature (0: greedy).
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Most new tokens per response.
    pub max_new_tokens: usize,
    /// How pairs are formed.
    pub pairs: PairMode,
    /// The prompts table of the `prompts` input.
    pub table: String,
    /// Rows generated per batch (speed only; does not change the output).
    pub batch_size: usize,
}

impl Default for GenerateStageParams {
    fn default() -> Self {
        GenerateStageParams {
            samples: 4,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 24,
            pairs: PairMode::All,
            table: "prompts".into(),
            batch_size: 64,
        }
    }
}

/// The `generate` stage.
pub struct Generate;

impl Stage for Generate {
    type Params = GenerateStageParams;
    /// Bump when the output changes for the same inputs and params.
    const VERSION: u32 = 4;
    const INPUTS: &'static [Slot] = &[slots::MT, Slot::tables("prompts").by_default("world")];
    const TABLES: &'static [DeclaredTable] = &[
        ResponseRow::declared,
        PairRow::declared,
        GenerateStatsRow::declared,
    ];
    /// A shard takes a contiguous slice of the prompts; every row has its own seed.
    const SHARDABLE: bool = true;

    fn validate(&self, p: &GenerateStageParams) -> Result<(), ParamError> {
        if p.samples < 2 {
            return Err(ParamError::at(
                "samples",
                format!("must be at least 2 to form pairs, got {}", p.samples),
            ));
        }
        if p.max_new_tokens == 0 {
            return Err(ParamError::at("max_new_tokens", "must be at least 1"));
        }
        Ok(())
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let model = common::load_model(ctx.input("model")?, Weights::Frozen)?;
        let prompts = prompt_slice(ctx, &p.table)?;
        let prompts = prompts[ctx.shard_range(prompts.len())].to_vec();
        let n = p.samples;
        let mut rows = Vec::with_capacity(prompts.len() * n);
        let context = model.config().max_position_embeddings;
        for (id, text) in &prompts {
            let ids = model
                .text
                .encode_chat_prompt(&[Message::user(text.clone())])?;
            if ids.len().saturating_add(p.max_new_tokens) > context {
                anyhow::bail!(crate::user_err!(
                    "prompt {id} is {} tokens; with max_new_tokens {} that exceeds the model's \
                     context of {context} positions (max_position_embeddings); shorten or drop \
                     the prompt, or lower max_new_tokens",
                    ids.len(),
                    p.max_new_tokens
                ));
            }
            for s in 0..n {
                rows.push((*id, s, text.clone(), ids.clone()));
            }
        }
        let sampler = Sampler::at(p.temperature, p.top_p);
        let gp = GenerateParams::for_text(&model.text, p.max_new_tokens, sampler);
        let bar = ctx.progress(rows.len() as u64, "generate");
        let mut outs = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(p.batch_size.max(1)) {
            let ids: Vec<Vec<u32>> = chunk.iter().map(|r| r.3.clone()).collect();
            let seeds: Vec<u64> = chunk.iter().map(|r| row_seed(ctx.seed, r.0, r.1)).collect();
            outs.extend(generate(&model.decoder, &ids, &seeds, &gp, Adapters::On)?);
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        let responses = rows
            .iter()
            .zip(&outs)
            .map(|(row, g)| {
                Ok(response_row(
                    row,
                    n,
                    model.text.decode(&g.token_ids, true)?,
                    g,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (pairs, degenerate) = form_pairs(&prompts, &outs, n, p.pairs, ctx.seed);
        ctx.log(&format!(
            "{} prompts, {} responses, {} pairs, {degenerate} degenerate pairs dropped",
            prompts.len(),
            outs.len(),
            pairs.len()
        ));
        let ends = outs.iter().map(|g| (g.stopped, g.token_ids.len()));
        let stats = stats_row(prompts.len(), ends, pairs.len(), degenerate);
        ctx.write_rows(responses)?;
        ctx.write_rows(pairs)?;
        ctx.write_rows(vec![stats])
    }
    /// Responses and pairs in shard order (the prompts' order); the stats recounted.
    fn merge(&self, _p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let responses: Vec<ResponseRow> = ctx.part_rows()?;
        let pairs: Vec<PairRow> = ctx.part_rows()?;
        let parts: Vec<GenerateStatsRow> = ctx.part_rows()?;
        let prompts = parts.iter().map(|s| s.prompts as usize).sum();
        let degenerate = parts.iter().map(|s| s.degenerate_pairs as usize).sum();
        let ends = responses.iter().map(|r| (r.finished, r.token_ids.len()));
        let stats = stats_row(prompts, ends, pairs.len(), degenerate);
        ctx.write_rows(responses)?;
        ctx.write_rows(pairs)?;
        ctx.write_rows(vec![stats])
    }
}

/// `(prompt_id, text)` of the rows of `table` whose iteration is this task's.
fn prompt_slice(ctx: &TaskContext, table: &str) -> anyhow::Result<Vec<(i64, String)>> {
    let input = ctx.input("prompts")?;
    let k = ctx.iteration as i32;
    let out: Vec<(i64, String)> = PromptRow::read_path_at(input.table(table)?)?
        .into_iter()
        .filter(|(it, _)| *it == k)
        .map(|(_, r)| (r.id, r.prompt))
        .collect();
    if out.is_empty() {
        anyhow::bail!(crate::user_err!(
            "{}: table {table:?} of {} has no prompts for iteration {k}; give the prompt source \
             at least as many iterations as the pipeline",
            ctx.task,
            input.task
        ));
    }
    Ok(out)
}

/// The row of one generated response; `row` is `(prompt_id, sample, prompt, prompt_ids)`.
fn response_row(
    row: &(i64, usize, String, Vec<u32>),
    n: usize,
    text: String,
    g: &Generated,
) -> ResponseRow {
    ResponseRow {
        response_id: row.0 * n as i64 + row.1 as i64,
        prompt_id: row.0,
        sample_idx: row.1 as i32,
        prompt: row.2.clone(),
        prompt_ids: row.3.clone(),
        text,
        token_ids: g.token_ids.clone(),
        length: g.token_ids.len() as i32,
        finished: g.stopped,
    }
}

/// Index pairs `(i, j)` of `n` samples for one prompt.
fn index_pairs(n: usize, mode: PairMode, seed: u64, prompt_id: i64) -> Vec<(usize, usize)> {
    match mode {
        PairMode::All => (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .collect(),
        PairMode::Disjoint => {
            let order = crate::model::train_state::epoch_order(n, seed, prompt_id as u64);
            order.chunks_exact(2).map(|c| (c[0], c[1])).collect()
        }
    }
}

fn form_pairs(
    prompts: &[(i64, String)],
    outs: &[Generated],
    n: usize,
    mode: PairMode,
    seed: u64,
) -> (Vec<PairRow>, usize) {
    let mut pairs = Vec::new();
    let mut degenerate = 0;
    for (pi, (pid, _)) in prompts.iter().enumerate() {
        let idx = index_pairs(n, mode, seed, *pid);
        let per = idx.len() as i64;
        for (j, (a, b)) in idx.into_iter().enumerate() {
            let (ga, gb) = (&outs[pi * n + a], &outs[pi * n + b]);
            if ga.token_ids == gb.token_ids {
                degenerate += 1;
                continue;
            }
            pairs.push(PairRow {
                pair_id: pid * per + j as i64,
                prompt_id: *pid,
                response_id_1: pid * n as i64 + a as i64,
                response_id_2: pid * n as i64 + b as i64,
            });
        }
    }
    (pairs, degenerate)
}

/// The stats of `prompts` prompts whose responses ended as `ends` (finished, tokens).
fn stats_row(
    prompts: usize,
    ends: impl Iterator<Item = (bool, usize)>,
    pairs: usize,
    degenerate: usize,
) -> GenerateStatsRow {
    let (mut responses, mut finished, mut tokens) = (0usize, 0usize, 0usize);
    for (stopped, length) in ends {
        responses += 1;
        finished += usize::from(stopped);
        tokens += length;
    }
    let n = responses.max(1) as f64;
    GenerateStatsRow {
        prompts: prompts as i64,
        responses: responses as i64,
        pairs: pairs as i64,
        degenerate_pairs: degenerate as i64,
        finished_rate: finished as f64 / n,
        mean_length: tokens as f64 / n,
    }
}
