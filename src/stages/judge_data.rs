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
//! Writes [`judge_examples`](crate::tables::judge_examples).

use serde::{Deserialize, Serialize};

use super::common;
use super::common::answering::{self, AnswerSettings};
use crate::engine::stage::{DeclaredTable, ParamError, Slot, Stage, TaskContext};
use crate::model::generate::Sampler;
use crate::model::{Message, Weights};
use crate::table::Table;
use crate::tables::judge_examples::JudgeExampleRow;
use crate::tables::world::JudgePromptRow;
use crate::world::rng::RowRng;
use crate::world::tables::noisy_level;
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
    /// Rows generated per batch (speed only).
    pub batch_size: usize,
}

impl Default for JudgeDataParams {
    fn default() -> Self {
        JudgeDataParams {
            samples: 4,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 16,
            batch_size: 64,
        }
    }
}

/// Random-stream name of the label noise.
const NOISE_STREAM: &str = "judge_data.noise";

/// The `judge-data` stage.
pub struct JudgeData;

impl Stage for JudgeData {
    type Params = JudgeDataParams;
    const KIND: &'static str = "judge-data";
    /// Bump when the output changes for the same inputs and params.
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "judge examples from a model's own samples on the world's judge pool, gold-labelled";
    const INPUTS: &'static [Slot] = &[
        Slot::checkpoint("model"),
        Slot::tables("world").by_default("world"),
    ];
    const TABLES: &'static [DeclaredTable] = &[JudgeExampleRow::declared];

    fn validate(&self, p: &JudgeDataParams) -> Result<(), ParamError> {
        if p.samples == 0 {
            return Err(ParamError::at("samples", "must be at least 1"));
        }
        if p.max_new_tokens == 0 {
            return Err(ParamError::at("max_new_tokens", "must be at least 1"));
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
        let mut chats = Vec::with_capacity(prompts.len() * n);
        let mut ids = Vec::with_capacity(prompts.len() * n);
        for r in &prompts {
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
        let out = answering::answer_chats(&model, &chats, &ids, &settings, &mut |k| bar.inc(k))?;
        bar.finish_and_clear();
        let owners = prompts.iter().flat_map(|r| std::iter::repeat_n(r, n));
        let mut rows = Vec::with_capacity(out.len());
        for ((id, answer), prompt) in ids.iter().zip(out).zip(owners) {
            let gold = gold::score(&prompt.prompt, &answer.text)?;
            let mut rng = RowRng::new(ctx.seed, NOISE_STREAM, *id as u64);
            let (level, noisy) = noisy_level(&world, gold, &mut rng);
            rows.push(JudgeExampleRow {
                id: *id,
                prompt_id: prompt.id,
                sample: (*id - prompt.id * n as i64) as i32,
                task: prompt.task.clone(),
                prompt: prompt.prompt.clone(),
                response: answer.text,
                length: answer.token_ids.len() as i32,
                finished: answer.finished,
                gold,
                label: format::score_token(level),
                noisy,
            });
        }
        let exact = rows.iter().filter(|r| r.gold >= 1.0).count();
        ctx.log(&format!(
            "{} judge examples from {} prompts ({exact} exact)",
            rows.len(),
            prompts.len()
        ));
        ctx.write_rows(rows)
    }
}
