//! `judge-data`: judge examples from a model's *own* outputs. The model samples `samples`
//! responses per prompt of the world's `judge_prompts` pool, and each response is labelled
//! with its gold score level — the built-in world's stand-in for the human-labelled rankings
//! of model responses that Self-Rewarding LMs train their judge on (docs/world.md).
//!
//! Why: a judge taught only on perturbations of gold answers never sees the model's own
//! failure modes (repeated letters, unfinished responses), and is then below chance on the
//! pairs the model actually produces. `sft` takes these rows in place of the world's `eft`
//! when its `judge` input is bound (the default pipeline: `sft-ift` → `judge-data` → `sft`).
//!
//! The pool is disjoint from every other world table (the iterations' prompts and the
//! held-out sets included), and the stage runs before the iterations: gold never labels an
//! iteration's data. Label noise, score levels and the judge format are the world's
//! (`eft_label_noise`, `score_levels`, read from the `world` input's params), so these rows
//! train the judge exactly as the world's pointwise `eft` rows do, with the model's own
//! samples as responses.
//! Sampling uses one seed per (prompt, sample), so batching never changes a row.
//!
//! `mode: pairwise` writes verdict examples instead: for every two samples of a prompt with
//! different gold scores, both orders, labelled with the better one's letter.
//!
//! `meta_examples: m` (pointwise; default 0) also writes meta-judge examples, the world's
//! stand-in for the meta-judging an instruct model brings to Meta-Rewarding: per sample, m
//! random ordered pairs of score levels (drawn independently, so either position is as
//! likely to hold the better one) whose distances to the sample's label level differ,
//! labelled with the letter of the closer one ([`format::judge_meta`]).
//!
//! Writes [`judge_examples`](crate::tables::judge_examples) and `meta_examples` (empty
//! unless `meta_examples` > 0).

use serde::{Deserialize, Serialize};

use super::common;
use super::common::answering::{self, Answer, AnswerSettings};
use crate::engine::stage::{DeclaredTable, ParamError, Slot, Stage, TaskContext};
use crate::model::generate::Sampler;
use crate::model::{Message, Model, Weights};
use crate::table::Table;
use crate::tables::grm_scores::GrmMode;
use crate::tables::judge_examples::{JudgeExampleRow, MetaExampleRow};
use crate::tables::world::JudgePromptRow;
use crate::world::rng::RowRng;
use crate::world::tables::{PAIR_EPSILON, noisy_level};
use crate::world::{WorldParams, format, gold};

/// Params of `judge-data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeDataParams {
    /// Responses sampled per judge prompt.
    pub samples: usize,
    /// Sampling temperature (match `generate`'s, so the judge sees what it will judge).
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Most new tokens per response (match `generate`'s: unfinished responses are judged too).
    pub max_new_tokens: usize,
    /// `pointwise`: one example per sample, its score level. `pairwise`: two per pair of one
    /// prompt's samples with different gold scores (both orders), the better one's letter.
    pub mode: GrmMode,
    /// Rows generated per batch (speed only).
    pub batch_size: usize,
    /// Meta-judge examples per sample (pointwise only; 0: none, and left out of the key).
    #[serde(skip_serializing_if = "is_zero")]
    pub meta_examples: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Default for JudgeDataParams {
    fn default() -> Self {
        JudgeDataParams {
            samples: 4,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 16,
            mode: GrmMode::Pointwise,
            batch_size: 64,
            meta_examples: 0,
        }
    }
}

/// Random-stream names of the label noise.
const NOISE_STREAM: &str = "judge_data.noise";
const PAIR_NOISE_STREAM: &str = "judge_data.pair_noise";
const META_STREAM: &str = "judge_data.meta";
/// Draws per meta example before giving up on a pair with unequal distances.
const META_TRIES: usize = 32;

/// The `judge-data` stage.
pub struct JudgeData;

impl Stage for JudgeData {
    type Params = JudgeDataParams;
    /// Bump when the output changes for the same inputs and params.
    const VERSION: u32 = 2;
    const INPUTS: &'static [Slot] = &[
        Slot::checkpoint("model"),
        Slot::tables("world").by_default("world"),
    ];
    const TABLES: &'static [DeclaredTable] = &[JudgeExampleRow::declared, MetaExampleRow::declared];

    fn validate(&self, p: &JudgeDataParams) -> Result<(), ParamError> {
        let least = match p.mode {
            GrmMode::Pointwise => 1,
            GrmMode::Pairwise => 2,
        };
        if p.samples < least {
            return Err(ParamError::at(
                "samples",
                format!(
                    "must be at least {least} for mode {} (pairwise examples pair two samples \
                     of one prompt), got {}",
                    p.mode.as_str(),
                    p.samples
                ),
            ));
        }
        if p.max_new_tokens == 0 {
            return Err(ParamError::at("max_new_tokens", "must be at least 1"));
        }
        if p.meta_examples > 0 && p.mode != GrmMode::Pointwise {
            return Err(ParamError::at(
                "meta_examples",
                "meta-judge examples compare score levels: they need mode pointwise",
            ));
        }
        if !(p.temperature >= 0.0 && p.temperature.is_finite()) {
            return Err(ParamError::at(
                "temperature",
                "must be 0 (greedy) or a positive number",
            ));
        }
        Ok(())
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let model = common::load_model(ctx.input("model")?, Weights::Frozen)?;
        let world_input = ctx.input("world")?;
        let world: WorldParams = world_input.params_as()?;
        let prompts: Vec<JudgePromptRow> = world_input.rows()?;
        if prompts.is_empty() {
            anyhow::bail!(crate::user_err!(
                "{}: the world has no judge prompts; set `judge_prompts` in the world's params",
                ctx.task
            ));
        }
        let n = p.samples;
        let samples = sample(ctx, &model, &prompts, p)?;
        let rows = match p.mode {
            GrmMode::Pointwise => pointwise_rows(&samples, &world, ctx.seed, n),
            GrmMode::Pairwise => pairwise_rows(&samples, &world, ctx.seed, n),
        };
        let meta = meta_rows(&rows, &world, ctx.seed, p.meta_examples)?;
        let exact = samples.iter().filter(|s| s.gold >= 1.0).count();
        ctx.log(&format!(
            "{} judge examples from {} samples of {} prompts ({exact} exact)",
            rows.len(),
            samples.len(),
            prompts.len()
        ));
        ctx.write_rows(rows)?;
        ctx.write_rows(meta)
    }
}

/// `m` meta-judge examples per pointwise example (see the module docs).
fn meta_rows(
    rows: &[JudgeExampleRow],
    world: &WorldParams,
    seed: u64,
    m: usize,
) -> anyhow::Result<Vec<MetaExampleRow>> {
    let levels = world.score_levels as usize;
    let mut out = Vec::new();
    for r in rows.iter().filter(|_| m > 0) {
        let level: usize = r.label.parse()?;
        let mut rng = RowRng::new(seed, META_STREAM, r.id as u64);
        for _ in 0..m {
            let Some((a, b)) = (0..META_TRIES).find_map(|_| {
                let (a, b) = (rng.between(1, levels), rng.between(1, levels));
                (a.abs_diff(level) != b.abs_diff(level)).then_some((a, b))
            }) else {
                continue;
            };
            out.push(MetaExampleRow {
                id: r.id,
                prompt_id: r.prompt_id,
                prompt: r.prompt.clone(),
                response: r.response.clone(),
                judgment_a: format::score_token(a as u32),
                judgment_b: format::score_token(b as u32),
                level: level as i32,
                label: format::verdict(a.abs_diff(level) < b.abs_diff(level)).into(),
            });
        }
    }
    Ok(out)
}

/// `p.samples` responses per prompt from `model`, gold-scored, prompt by prompt.
fn sample<'a>(
    ctx: &TaskContext,
    model: &Model,
    prompts: &'a [JudgePromptRow],
    p: &JudgeDataParams,
) -> anyhow::Result<Vec<Sample<'a>>> {
    let n = p.samples;
    let mut chats = Vec::with_capacity(prompts.len() * n);
    let mut ids = Vec::with_capacity(prompts.len() * n);
    for r in prompts {
        for s in 0..n {
            chats.push(vec![Message::user(r.prompt.clone())]);
            ids.push(r.id * n as i64 + s as i64);
        }
    }
    let settings = AnswerSettings {
        max_new_tokens: p.max_new_tokens,
        sampler: Sampler::at(p.temperature, p.top_p),
        batch_size: p.batch_size,
        seed: ctx.seed,
    };
    let bar = ctx.progress(chats.len() as u64, "judge-data");
    let out = answering::answer_chats(model, &chats, &ids, &settings, &mut |k| bar.inc(k))?;
    bar.finish_and_clear();
    let owners = prompts.iter().flat_map(|r| std::iter::repeat_n(r, n));
    ids.iter()
        .zip(out)
        .zip(owners)
        .map(|((&id, answer), prompt)| {
            let gold = gold::score(&prompt.prompt, &answer.text)?;
            Ok(Sample {
                id,
                prompt,
                answer,
                gold,
            })
        })
        .collect()
}

/// One sampled response and its gold score.
struct Sample<'a> {
    /// `prompt_id · samples + sample`.
    id: i64,
    prompt: &'a JudgePromptRow,
    answer: Answer,
    gold: f64,
}

/// The row of `a` (and `b`, pairwise) with `label`.
fn row(n: usize, a: &Sample, b: Option<&Sample>, label: String, noisy: bool) -> JudgeExampleRow {
    JudgeExampleRow {
        id: a.id,
        prompt_id: a.prompt.id,
        sample: (a.id - a.prompt.id * n as i64) as i32,
        task: a.prompt.task.clone(),
        prompt: a.prompt.prompt.clone(),
        mode: if b.is_some() {
            GrmMode::Pairwise
        } else {
            GrmMode::Pointwise
        },
        response: a.answer.text.clone(),
        response_b: b.map(|b| b.answer.text.clone()),
        length: a.answer.token_ids.len() as i32,
        finished: a.answer.finished,
        gold: a.gold,
        gold_b: b.map(|b| b.gold),
        label,
        noisy,
    }
}

/// One example per sample: its score level (with the world's label noise).
fn pointwise_rows(
    samples: &[Sample],
    world: &WorldParams,
    seed: u64,
    n: usize,
) -> Vec<JudgeExampleRow> {
    samples
        .iter()
        .map(|s| {
            let mut rng = RowRng::new(seed, NOISE_STREAM, s.id as u64);
            let (level, noisy) = noisy_level(world, s.gold, &mut rng);
            row(n, s, None, format::score_token(level), noisy)
        })
        .collect()
}

/// Two examples per pair of one prompt's samples with different gold scores, one in each
/// order (so the verdict cannot be learnt from the position): the better one's letter, the
/// other with probability `eft_label_noise` (the same draw for both orders).
fn pairwise_rows(
    samples: &[Sample],
    world: &WorldParams,
    seed: u64,
    n: usize,
) -> Vec<JudgeExampleRow> {
    let mut rows = Vec::new();
    for group in samples.chunks(n) {
        for (i, a) in group.iter().enumerate() {
            for b in &group[i + 1..] {
                if (a.gold - b.gold).abs() <= PAIR_EPSILON {
                    continue;
                }
                let stream = (a.id as u64) << 16 | (b.id - a.id) as u64;
                let noisy =
                    RowRng::new(seed, PAIR_NOISE_STREAM, stream).chance(world.eft_label_noise);
                let a_better = (a.gold > b.gold) != noisy;
                rows.push(row(n, a, Some(b), format::verdict(a_better).into(), noisy));
                rows.push(row(n, b, Some(a), format::verdict(!a_better).into(), noisy));
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(prompt: &'a JudgePromptRow, id: i64, text: &str) -> Sample<'a> {
        let gold = gold::score(&prompt.prompt, text).unwrap();
        let answer = Answer {
            prompt_ids: vec![],
            token_ids: vec![0; text.len()],
            text: text.into(),
            finished: true,
        };
        Sample {
            id,
            prompt,
            answer,
            gold,
        }
    }

    #[test]
    fn pairwise_examples_show_both_orders_and_skip_gold_ties() {
        let prompt = JudgePromptRow {
            id: 0,
            task: "sort".into(),
            prompt: "sort: cab\n".into(),
        };
        // Gold: "abc" 1, "acb" 2·2/6 ≈ 0.667, "bac" likewise (a tie with "acb": skipped).
        let s = [
            sample(&prompt, 0, "abc"),
            sample(&prompt, 1, "acb"),
            sample(&prompt, 2, "bac"),
        ];
        let world = WorldParams {
            eft_label_noise: 0.0,
            ..WorldParams::default()
        };
        let rows = pairwise_rows(&s, &world, 7, 3);
        let shown: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r.response.as_str(),
                    r.response_b.as_deref().unwrap(),
                    r.label.as_str(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("abc", "acb", "A"),
                ("acb", "abc", "B"),
                ("abc", "bac", "A"),
                ("bac", "abc", "B")
            ]
        );
        assert!(rows.iter().all(|r| r.mode == GrmMode::Pairwise && !r.noisy));
        // Pointwise: one row per sample, its gold level.
        let rows = pointwise_rows(&s, &world, 7, 3);
        let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["5", "2", "2"]);
    }

    #[test]
    fn pairwise_needs_two_samples_per_prompt() {
        let p = |mode, samples| JudgeDataParams {
            mode,
            samples,
            ..JudgeDataParams::default()
        };
        let err = JudgeData.validate(&p(GrmMode::Pairwise, 1)).unwrap_err();
        assert!(format!("{err:?}").contains("at least 2"), "{err:?}");
        assert!(JudgeData.validate(&p(GrmMode::Pairwise, 2)).is_ok());
        assert!(JudgeData.validate(&p(GrmMode::Pointwise, 1)).is_ok());
        assert!(JudgeData.validate(&p(GrmMode::Pointwise, 0)).is_err());
    }
}
