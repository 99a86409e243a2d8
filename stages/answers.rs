//! `answers`: one answer per prompt from a model — greedy by default — for
//! held-out evaluation (`grm-winrate`) and for `scir export --model-answers`.
//!
//! Unlike `generate` (n samples of iteration k's slice, paired for
//! training), this takes *every* row of the prompts table (all slices; the
//! first `limit` in id order) and writes one answer each. A prompt is one
//! user message in the model's chat template; [`answer_chats`] also answers
//! multi-turn conversations (MT-Bench's second turn). Rows are batched by
//! prompt length (speed only: each row's tokens depend only on its prompt,
//! its seed and the model), and sampling, when asked for, uses one seed per
//! row derived from the task seed and the prompt id.
//!
//! ```text
//! answers  iteration Int32, prompt_id Int64, prompt Utf8, prompt_ids List<Int32>, text Utf8,
//!          token_ids List<Int32> (EOS included when produced), length Int32 (tokens),
//!          finished Boolean (ended with EOS)
//! ```

use serde::{Deserialize, Serialize};

use super::common::{self, Col};
use super::generate::row_seed;
use crate::model::generate::{GenerateParams, Sampler, generate};
use crate::model::{Adapters, Message, Model, Weights};
use crate::stage::{Outputs, ParamError, Slot, SlotKind, Stage, TaskContext, resolve_typed};

/// Bump when the output changes for the same inputs and params.
pub const VERSION: u32 = 4;
pub const ANSWERS: &str = "answers";

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

/// How [`answer_chats`] decodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerSettings {
    pub max_new_tokens: usize,
    pub sampler: Sampler,
    pub batch_size: usize,
    /// Row seeds derive from it (sampling only).
    pub seed: u64,
}

impl AnswerSettings {
    /// Greedy decoding (the deterministic default of evaluation and export).
    pub fn greedy(max_new_tokens: usize, batch_size: usize) -> Self {
        AnswerSettings {
            max_new_tokens,
            sampler: Sampler::Greedy,
            batch_size,
            seed: 0,
        }
    }
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The conversation as fed to the model (chat template applied).
    pub prompt_ids: Vec<u32>,
    /// Generated ids, EOS included when produced.
    pub token_ids: Vec<u32>,
    /// The decoded answer (special tokens skipped).
    pub text: String,
    /// Ended with a stop token (false: ran out of tokens).
    pub finished: bool,
}

/// Answer each conversation (its last message is the user's) with `model`; `ids[i]` keys
/// row i's seed. `progress` is told how many rows each batch finished.
pub fn answer_chats(
    model: &Model,
    chats: &[Vec<Message>],
    ids: &[i64],
    s: &AnswerSettings,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<Vec<Answer>> {
    anyhow::ensure!(chats.len() == ids.len(), "one id per conversation");
    let prompts: Vec<Vec<u32>> = chats
        .iter()
        .map(|c| model.text.encode_chat_prompt(c))
        .collect::<anyhow::Result<_>>()?;
    let gp = GenerateParams {
        max_new_tokens: s.max_new_tokens,
        sampler: s.sampler,
        stop_ids: model.text.stop_ids().to_vec(),
        pad_id: model.text.pad_id(),
    };
    // Similar lengths share a batch (less padding); the order is restored below.
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| (prompts[i].len(), i));
    let mut outs = vec![None; prompts.len()];
    for chunk in order.chunks(s.batch_size.max(1)) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
        let seeds: Vec<u64> = chunk.iter().map(|&i| row_seed(s.seed, ids[i], 0)).collect();
        let gens = generate(&model.decoder, &batch, &seeds, &gp, Adapters::On)?;
        for (&i, g) in chunk.iter().zip(gens) {
            outs[i] = Some(g);
        }
        progress(chunk.len() as u64);
    }
    prompts
        .into_iter()
        .zip(outs)
        .map(|(prompt_ids, g)| {
            let g = g.ok_or_else(|| crate::internal_err!("a row was not generated"))?;
            Ok(Answer {
                prompt_ids,
                text: model.text.decode(&g.token_ids, true)?,
                finished: g.stopped,
                token_ids: g.token_ids,
            })
        })
        .collect()
}

/// The `answers` stage.
pub struct Answers;

const SLOTS: &[Slot] = &[
    Slot {
        name: "model",
        kind: SlotKind::Checkpoint,
    },
    Slot {
        name: "prompts",
        kind: SlotKind::Tables,
    },
];

impl Stage for Answers {
    fn kind(&self) -> &'static str {
        "answers"
    }
    fn version(&self) -> u32 {
        VERSION
    }
    fn about(&self) -> &'static str {
        "one answer per prompt (greedy by default) from a model, for held-out evaluation"
    }
    fn resolve_params(&self, raw: serde_json::Value) -> Result<serde_json::Value, ParamError> {
        let v = resolve_typed::<AnswersParams>(raw)?;
        let p: AnswersParams = serde_json::from_value(v.clone()).map_err(|e| ParamError {
            path: String::new(),
            message: e.to_string(),
        })?;
        let bad = |path: &str, message: &str| {
            Err(ParamError {
                path: path.into(),
                message: message.into(),
            })
        };
        if p.max_new_tokens == 0 {
            return bad("max_new_tokens", "must be at least 1");
        }
        if !(p.temperature >= 0.0 && p.temperature.is_finite()) {
            return bad("temperature", "must be 0 (greedy) or a positive number");
        }
        if p.limit == Some(0) {
            return bad("limit", "must be at least 1 (or null for all)");
        }
        Ok(v)
    }
    fn inputs(&self) -> &'static [Slot] {
        SLOTS
    }
    fn default_bindings(&self, _params: &serde_json::Value) -> Vec<(&'static str, String)> {
        vec![("model", "model@k".into()), ("prompts", "prompts".into())]
    }
    fn outputs(&self, _params: &serde_json::Value) -> Outputs {
        Outputs {
            tables: vec![(ANSWERS.into(), schema())],
            checkpoint: false,
        }
    }
    fn run(&self, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let p: AnswersParams = ctx.params()?;
        let model = common::load_model(ctx.input("model")?, Weights::Frozen)?;
        let prompts = read_prompts(ctx.input("prompts")?, &p.table, p.limit)?;
        let sampler = if p.temperature == 0.0 {
            Sampler::Greedy
        } else {
            Sampler::Sample {
                temperature: p.temperature,
                top_p: p.top_p,
            }
        };
        let settings = AnswerSettings {
            max_new_tokens: p.max_new_tokens,
            sampler,
            batch_size: p.batch_size,
            seed: ctx.seed,
        };
        let chats: Vec<Vec<Message>> = prompts
            .iter()
            .map(|(_, t)| vec![Message::user(t.clone())])
            .collect();
        let ids: Vec<i64> = prompts.iter().map(|(id, _)| *id).collect();
        let bar = ctx.progress(chats.len() as u64, "answers");
        let out = answer_chats(&model, &chats, &ids, &settings, &mut |n| bar.inc(n))?;
        bar.finish_and_clear();
        let finished = out.iter().filter(|a| a.finished).count();
        ctx.log(&format!("{} answers, {finished} finished", out.len()));
        let batch = common::batch(
            &schema(),
            ctx.iteration,
            vec![
                common::arr_i64(ids),
                common::arr_str(prompts.into_iter().map(|(_, t)| t).collect()),
                common::arr_ids(out.iter().map(|a| Some(a.prompt_ids.clone())).collect()),
                common::arr_str(out.iter().map(|a| a.text.clone()).collect()),
                common::arr_ids(out.iter().map(|a| Some(a.token_ids.clone())).collect()),
                common::arr_i32(out.iter().map(|a| a.token_ids.len() as i32).collect()),
                common::arr_bool(out.iter().map(|a| a.finished).collect()),
            ],
        )?;
        ctx.write_table(ANSWERS, &batch)
    }
}

/// `(id, prompt)` of every row of `table`, in id order, the first `limit`.
fn read_prompts(
    input: &crate::stage::InputArtifact,
    table: &str,
    limit: Option<usize>,
) -> anyhow::Result<Vec<(i64, String)>> {
    let b = common::read_table(input, table)?;
    let ids = common::col_i64(&b, "id")?;
    let texts = common::col_str(&b, "prompt")?;
    let mut rows: Vec<(i64, String)> = ids
        .into_iter()
        .zip(texts)
        .map(|(id, t)| (id, t.unwrap_or_default()))
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

/// One row of an `answers` table.
#[derive(Debug, Clone)]
pub struct AnswerRow {
    pub prompt_id: i64,
    pub prompt: String,
    pub text: String,
    pub token_ids: Vec<u32>,
}

/// The `answers` table of an input, by prompt id.
pub fn read_answers(
    input: &crate::stage::InputArtifact,
) -> anyhow::Result<std::collections::BTreeMap<i64, AnswerRow>> {
    let b = common::read_table(input, ANSWERS)?;
    let ids = common::col_i64(&b, "prompt_id")?;
    let prompts = common::col_str(&b, "prompt")?;
    let texts = common::col_str(&b, "text")?;
    let tokens = common::col_ids(&b, "token_ids")?;
    Ok((0..ids.len())
        .map(|i| {
            let row = AnswerRow {
                prompt_id: ids[i],
                prompt: prompts[i].clone().unwrap_or_default(),
                text: texts[i].clone().unwrap_or_default(),
                token_ids: tokens[i].clone().unwrap_or_default(),
            };
            (ids[i], row)
        })
        .collect())
}

fn schema() -> arrow::datatypes::SchemaRef {
    common::schema(&[
        ("prompt_id", Col::I64, false),
        ("prompt", Col::Str, false),
        ("prompt_ids", Col::Ids, true),
        ("text", Col::Str, false),
        ("token_ids", Col::Ids, true),
        ("length", Col::I32, false),
        ("finished", Col::Bool, false),
    ])
}
