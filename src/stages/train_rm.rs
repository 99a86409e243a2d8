//! `train-rm`: an external Bradley–Terry reward model, trained once on the judge seed data
//! and fixed across iterations — the "external RM" baseline and the usual RLHF piece.
//!
//! The RM is the `model` input's decoder (default `model@0`, M0) under a fresh scalar
//! `score` head on the last token (`*ForSequenceClassification`, [`crate::model::reward`]),
//! trained with TRL's `RewardTrainer` loss `−log σ(r(x, y_w) − r(x, y_l) − m)`
//! ([`crate::loss::reward`]; `margin_scale` > 0 sets `m = margin_scale·(level_w − level_l)`,
//! Llama 2's margin, and `center_rewards_coefficient` TRL's centering term).
//!
//! Pairs come from the `judge` input: its `preferences` (`demo-pairs`: chosen over rejected)
//! when it has that table, else its `judge_examples` (`judge-data`, what M0's judge learned
//! from), so the RM and the judge see the same labels: pointwise examples give
//! every two samples of a prompt whose score levels (the labels, with the world's label
//! noise) differ, the higher level chosen; pairwise examples give their pair, the labelled
//! letter chosen. A sequence is the prompt as generate encodes it (the chat template)
//! followed by the response and, when it finished, EOS — what score-grm later scores.
//! Prompts with `prompt_id % validation_every == 0` are held out (0: none); `rm_summary`
//! reports the accuracy on both splits.
//!
//! AdamW with a schedule and clipping over `epochs` seeded shuffles; `resume_every` as in
//! `sft`. Writes the RM checkpoint (transformers loads it as
//! `LlamaForSequenceClassification` & co.), [`rm_metrics`](crate::tables::reward_model)
//! and `rm_summary`.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::common;
use super::common::resume;
use super::common::training::{Optimizer, Training};
use crate::engine::stage::{DeclaredTable, ParamError, Slot, Stage, TaskContext};
use crate::loss::reward::{accuracy, bradley_terry};
use crate::model::reward::rewards_vec;
use crate::model::schedule::ScheduleKind;
use crate::model::train_state::epoch_batches;
use crate::model::trainer::{StepOutputs, varmap_vars};
use crate::model::{Adapters, Message, Model, Weights};
use crate::table::Table;
use crate::tables::judge_examples::JudgeExampleRow;
use crate::tables::preferences::PreferenceRow;
use crate::tables::reward_model::{RmMetricRow, RmSummaryRow};
use crate::world::format;

/// Params of `train-rm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainRmParams {
    pub epochs: u64,
    /// Pairs per optimizer step.
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: u64,
    pub schedule: ScheduleKind,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// `m = margin_scale·(level_w − level_l)` (0: no margin).
    pub margin_scale: f64,
    /// TRL's `center_rewards_coefficient` (`null`: off).
    pub center_rewards_coefficient: Option<f64>,
    /// Hold out the prompts with `prompt_id % validation_every == 0` (0: none).
    pub validation_every: i64,
    /// Leave out the pairs with a sequence (prompt + response) longer than this many tokens,
    /// as TRL's `RewardConfig.max_length` filters them (`null`: keep every pair).
    pub max_length: Option<usize>,
    /// Sequences per forward pass when scoring the splits (speed only).
    pub batch_size_eval: usize,
    /// Save resume state every this many steps (0: never; not in the key).
    pub resume_every: u64,
}

impl Default for TrainRmParams {
    fn default() -> Self {
        TrainRmParams {
            epochs: DEFAULT_EPOCHS,
            batch_size: 32,
            lr: 1e-3,
            warmup_steps: 30,
            schedule: ScheduleKind::Cosine,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            margin_scale: 0.0,
            center_rewards_coefficient: None,
            validation_every: 10,
            max_length: None,
            batch_size_eval: 64,
            resume_every: resume::DEFAULT_EVERY,
        }
    }
}

/// Default of `epochs`: the best validation accuracy of the sweep in docs/results
/// (methods.md: 1 or 3 epochs × lr 3e-4, 1e-3, 3e-3, seed 1, judge-data's held-out split;
/// 3 epochs at 1e-3: 0.736, 1 epoch: 0.693).
pub const DEFAULT_EPOCHS: u64 = 3;

/// The `train-rm` stage.
pub struct TrainRm;

impl Stage for TrainRm {
    type Params = TrainRmParams;
    /// Bump when the output changes for the same inputs and params (3: the reward and its
    /// gradients on the fast path, which agree with candle's within float rounding).
    const VERSION: u32 = 3;
    const INPUTS: &'static [Slot] = &[
        Slot::checkpoint("model").by_default("model@0"),
        Slot::tables("judge").by_default("judge-data"),
    ];
    const TABLES: &'static [DeclaredTable] = &[RmMetricRow::declared, RmSummaryRow::declared];
    const CHECKPOINT: bool = true;
    const UNKEYED_PARAMS: &'static [&'static str] = &[resume::PARAM];

    fn validate(&self, p: &TrainRmParams) -> Result<(), ParamError> {
        if p.batch_size == 0 || p.epochs == 0 {
            return Err(ParamError::at(
                "",
                "epochs and batch_size must be at least 1",
            ));
        }
        if p.max_length == Some(0) {
            return Err(ParamError::at("max_length", "must be at least 1 (or null)"));
        }
        if p.validation_every < 0 || p.margin_scale < 0.0 {
            return Err(ParamError::at(
                "",
                "validation_every and margin_scale must not be negative",
            ));
        }
        Ok(())
    }
    fn run(&self, p: &TrainRmParams, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let base = common::load_model(ctx.input("model")?, Weights::Frozen)?;
        let model = base.with_score_head(ctx.seed, Weights::Trainable)?;
        let judge = ctx.input("judge")?;
        let pairs = if judge.tables.contains_key(PreferenceRow::NAME) {
            preference_pairs(&model, &judge.rows()?)?
        } else {
            rm_pairs(&model, &judge.rows()?)?
        };
        let pairs = within(pairs, p.max_length, ctx)?;
        let (train, validation) = split(pairs, p.validation_every);
        if train.is_empty() {
            anyhow::bail!(crate::user_err!(
                "{}: no pair left to train on ({} held out by validation_every {}; judge \
                 examples give a pair only for two samples of a prompt with different labels): \
                 bind more judge data, or set `validation_every: 0`",
                ctx.task,
                validation.len(),
                p.validation_every
            ));
        }
        let steps_per_epoch = train.len().div_ceil(p.batch_size) as u64;
        let total = steps_per_epoch * p.epochs;
        ctx.log(&format!(
            "{} training pairs, {} held out, {total} steps",
            train.len(),
            validation.len()
        ));
        let rows = fit(ctx, p, &model, &train, total)?;
        let summary = [("train", &train), ("validation", &validation)]
            .into_iter()
            .map(|(name, pairs)| summary_row(&model, p, name, pairs))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for s in &summary {
            ctx.log(&format!(
                "{} accuracy {:?} on {} pairs",
                s.split, s.accuracy, s.pairs
            ));
        }
        model.save(&ctx.checkpoint_dir()?)?;
        ctx.write_rows(rows)?;
        ctx.write_rows(summary)
    }
}

/// One training pair: the chosen and the rejected sequence and the label levels' gap.
#[derive(Debug, Clone)]
struct RmPair {
    prompt_id: i64,
    chosen: Vec<u32>,
    rejected: Vec<u32>,
    level_gap: f64,
}

/// A sequence as score-grm later scores it: the prompt in the chat template, the response
/// and, when it finished, EOS.
fn encode(model: &Model, prompt: &str, response: &str, eos: bool) -> anyhow::Result<Vec<u32>> {
    let prompt = model
        .text
        .encode_chat_prompt(&[Message::user(prompt.to_string())])?;
    let reply = model.text.encode_response(response, eos)?;
    Ok([prompt, reply].concat())
}

/// The pairs of a `preferences` table, in row order.
fn preference_pairs(model: &Model, rows: &[PreferenceRow]) -> anyhow::Result<Vec<RmPair>> {
    rows.iter()
        .map(|r| {
            Ok(RmPair {
                prompt_id: r.prompt_id,
                chosen: encode(model, &r.prompt, &r.chosen, r.chosen_finished)?,
                rejected: encode(model, &r.prompt, &r.rejected, r.rejected_finished)?,
                level_gap: 1.0,
            })
        })
        .collect()
}

/// The pairs of the judge examples (see the module docs), in a fixed order.
fn rm_pairs(model: &Model, examples: &[JudgeExampleRow]) -> anyhow::Result<Vec<RmPair>> {
    // Whether a response ended with EOS, by (prompt, text): a pairwise row carries the flag
    // of its response A only; its mirror row (B shown as A) carries B's.
    let finished: std::collections::BTreeMap<(i64, &str), bool> = examples
        .iter()
        .map(|r| ((r.prompt_id, r.response.as_str()), r.finished))
        .collect();
    let encode =
        |r: &JudgeExampleRow, response: &str, eos: bool| encode(model, &r.prompt, response, eos);
    let mut pairs = Vec::new();
    let mut by_prompt: std::collections::BTreeMap<i64, Vec<&JudgeExampleRow>> =
        std::collections::BTreeMap::new();
    for r in examples {
        match &r.response_b {
            Some(b) => {
                let b_finished = finished.get(&(r.prompt_id, b.as_str())).copied();
                let a = encode(r, &r.response, r.finished)?;
                let b = encode(r, b, b_finished.unwrap_or(r.finished))?;
                let (chosen, rejected) = if r.label == format::VERDICT_A {
                    (a, b)
                } else {
                    (b, a)
                };
                pairs.push(RmPair {
                    prompt_id: r.prompt_id,
                    chosen,
                    rejected,
                    level_gap: 1.0,
                });
            }
            None => by_prompt.entry(r.prompt_id).or_default().push(r),
        }
    }
    for rows in by_prompt.values() {
        for (i, a) in rows.iter().enumerate() {
            for b in &rows[i + 1..] {
                let (la, lb) = (level(a)?, level(b)?);
                if la == lb {
                    continue;
                }
                let (w, l) = if la > lb { (a, b) } else { (b, a) };
                pairs.push(RmPair {
                    prompt_id: a.prompt_id,
                    chosen: encode(w, &w.response, w.finished)?,
                    rejected: encode(l, &l.response, l.finished)?,
                    level_gap: (la - lb).abs(),
                });
            }
        }
    }
    Ok(pairs)
}

/// A pointwise example's label as a number (the world's score levels are digits).
fn level(r: &JudgeExampleRow) -> anyhow::Result<f64> {
    r.label.trim().parse().map_err(|_| {
        anyhow::anyhow!(crate::user_err!(
            "judge example {}: label {:?} is not a score level; train-rm orders pointwise \
             examples by their numeric labels",
            r.id,
            r.label
        ))
    })
}

/// The pairs whose sequences all fit in `max_length` tokens (all of them for `None`).
fn within(
    pairs: Vec<RmPair>,
    max_length: Option<usize>,
    ctx: &mut TaskContext,
) -> anyhow::Result<Vec<RmPair>> {
    let Some(max) = max_length else {
        return Ok(pairs);
    };
    let n = pairs.len();
    let kept: Vec<RmPair> = pairs
        .into_iter()
        .filter(|p| p.chosen.len().max(p.rejected.len()) <= max)
        .collect();
    if kept.is_empty() && n > 0 {
        anyhow::bail!(crate::user_err!(
            "{}: every one of the {n} pairs has a sequence longer than max_length {max} \
             tokens; raise max_length",
            ctx.task
        ));
    }
    if kept.len() < n {
        ctx.log(&format!(
            "{} of {n} pairs left out: a sequence longer than max_length {max}",
            n - kept.len()
        ));
    }
    Ok(kept)
}

/// `(train, validation)` by `prompt_id % every == 0`.
fn split(pairs: Vec<RmPair>, every: i64) -> (Vec<RmPair>, Vec<RmPair>) {
    pairs
        .into_iter()
        .partition(|p| every == 0 || p.prompt_id.rem_euclid(every) != 0)
}

/// The optimizer steps; the metric rows.
fn fit(
    ctx: &mut TaskContext,
    p: &TrainRmParams,
    model: &Model,
    pairs: &[RmPair],
    total: u64,
) -> anyhow::Result<Vec<RmMetricRow>> {
    let opt = Optimizer {
        lr: p.lr,
        schedule: p.schedule,
        warmup_steps: p.warmup_steps.min(total),
        weight_decay: p.weight_decay,
        max_grad_norm: p.max_grad_norm,
    };
    let vars = varmap_vars(&model.varmap)?;
    let mut training =
        Training::<RmMetricRow>::with_adamw(ctx, p.resume_every, vars, total, "train-rm", &opt)?;
    let batches = epoch_batches(pairs.len(), p.batch_size, p.epochs, ctx.seed);
    for b in batches.skip(training.done as usize) {
        let batch: Vec<&RmPair> = b.items.iter().map(|&i| &pairs[i]).collect();
        let mut outputs = StepOutputs::new(&model.decoder, model.text.pad_id());
        let (loss, chosen, rejected) = batch_loss(&mut outputs, p, &batch)?;
        let value = loss.to_scalar::<f64>()?;
        let info = training.step("the reward loss", value, b.step, || {
            Ok(vec![outputs.gradients(&loss)?])
        })?;
        let margin = chosen
            .iter()
            .zip(&rejected)
            .map(|(c, r)| c - r)
            .sum::<f64>()
            / batch.len() as f64;
        let row = RmMetricRow {
            step: b.step as i32,
            epoch: b.epoch as i32,
            pairs: batch.len() as i32,
            loss: value,
            accuracy: accuracy(&chosen, &rejected).unwrap_or(f64::NAN),
            margin,
            lr: info.lr,
            grad_norm: info.grad_norm,
        };
        let message = format!("{} loss {value:.4}", ctx.task);
        training.record(ctx.seed, b.step, (b.epoch, b.position), row, message)?;
    }
    Ok(training.finish())
}

/// The Bradley–Terry loss of a batch, and its chosen and rejected rewards.
fn batch_loss(
    outputs: &mut StepOutputs,
    p: &TrainRmParams,
    batch: &[&RmPair],
) -> anyhow::Result<(Tensor, Vec<f64>, Vec<f64>)> {
    let n = batch.len();
    let mut seqs: Vec<Vec<u32>> = batch.iter().map(|b| b.chosen.clone()).collect();
    seqs.extend(batch.iter().map(|b| b.rejected.clone()));
    let r = outputs.rewards(&seqs)?;
    let (chosen, rejected) = (r.narrow(0, 0, n)?, r.narrow(0, n, n)?);
    let margin = (p.margin_scale > 0.0)
        .then(|| {
            let m: Vec<f64> = batch.iter().map(|b| p.margin_scale * b.level_gap).collect();
            Tensor::from_vec(m, n, &common::device())
        })
        .transpose()?;
    let loss = bradley_terry(
        &chosen,
        &rejected,
        margin.as_ref(),
        p.center_rewards_coefficient,
    )?;
    let host = |t: &Tensor| -> anyhow::Result<Vec<f64>> {
        Ok(t.detach().to_dtype(candle_core::DType::F64)?.to_vec1()?)
    };
    Ok((loss, host(&chosen)?, host(&rejected)?))
}

/// The trained RM's accuracy on one split.
fn summary_row(
    model: &Model,
    p: &TrainRmParams,
    split: &str,
    pairs: &[RmPair],
) -> anyhow::Result<RmSummaryRow> {
    let score = |seqs: Vec<Vec<u32>>| -> anyhow::Result<Vec<f64>> {
        let r = rewards_vec(
            &model.decoder,
            &seqs,
            model.text.pad_id(),
            Adapters::On,
            p.batch_size_eval,
        )?;
        Ok(r.into_iter().map(f64::from).collect())
    };
    let chosen = score(pairs.iter().map(|x| x.chosen.clone()).collect())?;
    let rejected = score(pairs.iter().map(|x| x.rejected.clone()).collect())?;
    Ok(RmSummaryRow {
        split: split.to_string(),
        pairs: pairs.len() as i64,
        accuracy: accuracy(&chosen, &rejected),
    })
}
