//! `sft`: supervised fine-tuning of the initial model on the world's IFT
//! (instruction demos) and EFT (judge examples) tables into M0.
//!
//! Each example is a (prompt, response) pair in the world's text formats
//! ([`crate::world::format`]): instructions as they are; pointwise judge
//! examples as `judge_pointwise(prompt, response_a)` → score token; pairwise
//! ones as `judge_pairwise(prompt, a, b)` → verdict token. The response gets
//! EOS. Loss: mean NLL over response tokens (the prompt is masked). Steps draw
//! batches from a seeded shuffle of all examples (epoch after epoch), AdamW
//! with a schedule and clipping; a non-finite loss stops the task.
//! The gradient comes from the fast path's recorded forward and hand-written
//! backward ([`crate::model::fast::train`]; groups of examples on all threads,
//! summed in a fixed order) for f32 weights; otherwise from candle's autograd,
//! where `shards: S` (default 4) splits each batch into S contiguous parts whose
//! forward and backward run concurrently (rayon), each padded to its own
//! longest example, the step's gradient their sum in shard order. Either way
//! the result does not depend on the number of threads.
//! `lora: { rank, alpha, target_modules }` trains LoRA adapters only (the base weights stay
//! fixed, on the fast path as well) and merges them into the saved model.
//! `resume_every: N` (default 50; 0: never) saves the training state every N
//! steps into the task's resume area; a killed task continues from there and
//! ends bit-identical ([`common::resume`]; not part of the key).
//!
//! A user's data (`data` bound to an `sft-data` stage, table `sft_examples`) takes the place
//! of the world's IFT: a conversational example's prompt goes through the model's chat
//! template with the generation prompt, and its completion is what the template renders
//! after that for the assistant's reply (the reply and the template's end of turn, as TRL
//! tokenizes it); a standard example is plain text, EOS after the completion. The loss is
//! on the completion only.
//!
//! A `judge` input with `preferences` (`preference-data`: a user's TRL preference file)
//! gives two pairwise judge examples per pair, one in each order, rendered through
//! `judge_template` (default: the world's pairwise format; `builtin:mt-bench-pair` for a
//! real instruct model) and answered with the verdict (`A`/`B`) that names `chosen`.
//!
//! Inputs: `model` (checkpoint, default `model@initial`), `data` (tables
//! `ift`, `eft`, default `world`; or `sft_examples`), and `judge` (unbound by default): when
//! bound, its `judge_examples` (`judge-data`: the model's own samples, gold-labelled) and its
//! `meta_examples` (meta-judge examples, when it made any) replace the data's `eft`; a
//! data input without `eft` and no judge give no judge examples. Outputs: the checkpoint and
//! table `sft_metrics`:
//!
//! ```text
//! sft_metrics  iteration Int32, step Int32, loss Float64, lr Float64,
//!              grad_norm Float64, tokens Int64 (response tokens in the step)
//! ```

use std::path::PathBuf;
use std::time::Instant;

use candle_core::backprop::GradStore;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::common;
use super::common::judge::{self, JudgeTemplate, Shape};
use super::common::resume;
use super::common::training::{self, Optimizer, Training};
use crate::engine::stage::{DeclaredTable, Slot, Stage, TaskContext};
use crate::model::lora::LoraConfig;
use crate::model::schedule::ScheduleKind;
use crate::model::score::{Pair, response_logprobs};
use crate::model::trainer::StepOutputs;
use crate::model::{Adapters, Decoder, Message};
use crate::table::Table;
use crate::tables::judge_examples::{JudgeExampleRow, MetaExampleRow};
use crate::tables::preferences::PreferenceRow;
use crate::tables::sft_examples::SftExampleRow;
use crate::tables::sft_metrics::SftMetricRow;
use crate::tables::world::{EftRow, IftRow};
use crate::world::format;

/// Params of `sft`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftParams {
    /// Optimizer steps.
    pub steps: u64,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warmup steps of the schedule.
    pub warmup_steps: u64,
    /// Learning-rate schedule.
    pub schedule: ScheduleKind,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Clip the gradient norm to this.
    pub max_grad_norm: f64,
    /// Train on the instruction demos.
    pub ift: bool,
    /// Train on the judge examples.
    pub eft: bool,
    /// Parts of each batch computed concurrently on candle's path (see the module docs).
    pub shards: usize,
    /// Save resume state every this many steps (0: never; not in the key).
    pub resume_every: u64,
    /// The pairwise judge template (a file relative to the pipeline, or `builtin:<name>`)
    /// that renders a `judge` input's `preferences` as judge examples; absent: the world's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge_template: Option<PathBuf>,
    /// Train LoRA adapters instead of every weight (merged into the saved model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
}

impl Default for SftParams {
    fn default() -> Self {
        SftParams {
            steps: 600,
            batch_size: 32,
            lr: 3e-3,
            warmup_steps: 30,
            schedule: ScheduleKind::Cosine,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            ift: true,
            eft: true,
            shards: DEFAULT_SHARDS,
            resume_every: resume::DEFAULT_EVERY,
            judge_template: None,
            lora: None,
        }
    }
}

/// Default of `shards`. More, smaller shards pad less: on 2 cores 100 SFT steps of the
/// default took 15.9 s with 2 shards, 13.6 s with 4, 38.4 s unsharded (one machine, one run).
pub const DEFAULT_SHARDS: usize = 4;

/// The `sft` stage.
pub struct Sft;

impl Stage for Sft {
    type Params = SftParams;
    /// Bump when SFT's output changes for the same inputs and params.
    const VERSION: u32 = 4;
    const INPUTS: &'static [Slot] = &[
        Slot::checkpoint("model").by_default("model@initial"),
        Slot::tables("data").by_default("world"),
        // Unbound unless the pipeline binds it: judge examples in place of the data's `eft`.
        Slot::tables("judge").optional(),
    ];
    const TABLES: &'static [DeclaredTable] = &[SftMetricRow::declared];
    const CHECKPOINT: bool = true;
    const UNKEYED_PARAMS: &'static [&'static str] = &[resume::PARAM];

    fn external_files(&self, p: &SftParams) -> Vec<PathBuf> {
        judge::template_file(&p.judge_template)
            .into_iter()
            .collect()
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let mut model = common::load_model(ctx.input("model")?, training::base_weights(&p.lora))?;
        let default = (judge::DEFAULT_PAIRWISE, "built-in pairwise");
        let template = judge::load_or(
            &ctx.pipeline_dir,
            &p.judge_template,
            Shape::Pairwise,
            default,
        )?;
        let (data, judge) = (ctx.input("data")?, ctx.try_input("judge"));
        let examples = examples(&model.text, data, judge, &template, p)?;
        if examples.is_empty() {
            anyhow::bail!(crate::user_err!(
                "sft: no training examples (set `ift` or `eft`, give the world IFT/EFT rows, or bind \
                 `data` to an sft-data stage)"
            ));
        }
        ctx.log(&format!("{} examples", examples.len()));
        let opt = Optimizer {
            lr: p.lr,
            schedule: p.schedule,
            warmup_steps: p.warmup_steps,
            weight_decay: p.weight_decay,
            max_grad_norm: p.max_grad_norm,
        };
        let (lora, vars) = training::trainable(&mut model, &p.lora)?;
        let mut training =
            Training::<SftMetricRow>::with_adamw(ctx, p.resume_every, vars, p.steps, "sft", &opt)?;
        let n = examples.len();
        let (epoch, position) = training.resumed_at.unwrap_or((0, 0));
        let mut cursor = Cursor::at(n, ctx.seed, epoch, position as usize);
        let pad = model.text.pad_id();
        let start = Instant::now();
        let mut seen_tokens = 0u64;
        for step in training.done + 1..=p.steps {
            let batch: Vec<Pair> = (0..p.batch_size.max(1))
                .map(|_| examples[cursor.next(n, ctx.seed)].clone())
                .collect();
            let tokens: usize = batch.iter().map(|e| e.response.len()).sum();
            let (value, grads) = sharded_gradients(&model.decoder, &batch, tokens, pad, p.shards)?;
            let info = training.step("the SFT loss", value, step, || Ok(grads))?;
            seen_tokens += tokens as u64;
            let row = SftMetricRow {
                step: step as i32,
                loss: value,
                lr: info.lr,
                grad_norm: info.grad_norm,
                tokens: tokens as i64,
            };
            let rate = seen_tokens as f64 / start.elapsed().as_secs_f64().max(1e-9);
            let message = format!("{} loss {value:.3} {rate:.0} tok/s", ctx.task);
            let at = (cursor.epoch, cursor.pos as u64);
            training.record(ctx.seed, step, at, row, message)?;
        }
        let rows = training.finish();
        if let Some(last) = rows.last() {
            ctx.log(&format!("final loss {:.4}", last.loss));
        }
        if let Some(set) = &lora {
            model.merge_lora(set)?;
        }
        model.save(&ctx.checkpoint_dir()?)?;
        ctx.write_rows(rows)
    }
}

/// The mean response-token NLL of `batch` (`tokens` response tokens) and its gradient: one
/// store from the fast path, or on candle's path one store per part, the parts computed
/// concurrently. Part `i`'s loss is its NLL sum × `parts / tokens`, so the mean of the stores
/// (what [`Stepper::step`] applies) is the gradient of the whole batch's mean.
fn sharded_gradients(
    dec: &Decoder,
    batch: &[Pair],
    tokens: usize,
    pad: u32,
    shards: usize,
) -> anyhow::Result<(f64, Vec<GradStore>)> {
    if let StepOutputs::Fast(mut rec) = StepOutputs::new(dec, pad) {
        let nll = rec.response_logprobs(batch)?.sum_all()?.neg()?;
        let value = nll.to_scalar::<f32>()? as f64 / tokens.max(1) as f64;
        let loss = (nll / tokens.max(1) as f64)?;
        return Ok((value, vec![rec.weight_grads(&loss.backward()?)?]));
    }
    let parts: Vec<&[Pair]> = batch.chunks(batch.len().div_ceil(shards.max(1))).collect();
    let scale = parts.len() as f64 / tokens.max(1) as f64;
    let results: Vec<anyhow::Result<(f64, GradStore)>> = parts
        .par_iter()
        .map(|part| {
            let lp = response_logprobs(dec, part, pad, Adapters::On)?;
            let nll = lp.sum_all()?.neg()?;
            let value = nll.to_scalar::<f32>()? as f64 / tokens.max(1) as f64;
            Ok((value, (nll * scale)?.backward()?))
        })
        .collect();
    let mut value = 0.0;
    let mut grads = Vec::with_capacity(results.len());
    for r in results {
        let (v, g) = r?;
        value += v;
        grads.push(g);
    }
    Ok((value, grads))
}

/// Where SFT is in its stream of shuffled epochs: `epoch` orders drawn so
/// far, `pos` examples consumed from the last one.
struct Cursor {
    order: Vec<usize>,
    epoch: u64,
    pos: usize,
}

impl Cursor {
    fn at(n: usize, seed: u64, epoch: u64, pos: usize) -> Cursor {
        let order = match epoch {
            0 => Vec::new(),
            e => crate::model::train_state::epoch_order(n, seed, e - 1),
        };
        Cursor { order, epoch, pos }
    }
    /// The next example's index.
    fn next(&mut self, n: usize, seed: u64) -> usize {
        if self.pos >= self.order.len() {
            self.order = crate::model::train_state::epoch_order(n, seed, self.epoch);
            self.epoch += 1;
            self.pos = 0;
        }
        self.pos += 1;
        self.order[self.pos - 1]
    }
}

/// Every training example as (prompt ids, response ids + EOS).
fn examples(
    text: &crate::model::Text,
    data: &crate::engine::stage::InputArtifact,
    judge: Option<&crate::engine::stage::InputArtifact>,
    template: &JudgeTemplate,
    p: &SftParams,
) -> anyhow::Result<Vec<Pair>> {
    let mut texts: Vec<(String, String)> = Vec::new();
    let mut pairs = Vec::new();
    if p.ift && data.tables.contains_key(SftExampleRow::NAME) {
        for r in data.rows::<SftExampleRow>()? {
            pairs.push(user_example(text, &r)?);
        }
    } else if p.ift {
        for r in data.rows::<IftRow>()? {
            texts.push((r.prompt, r.response));
        }
    }
    if p.eft {
        let judged: Vec<(String, String)> = match judge {
            Some(judge) if judge.tables.contains_key(PreferenceRow::NAME) => {
                pairs.extend(preference_examples(text, template, &judge.rows()?)?);
                Vec::new()
            }
            Some(judge) => {
                let judged = judge
                    .rows::<JudgeExampleRow>()?
                    .into_iter()
                    .map(|r| (judge_prompt(&r.prompt, &r.response, &r.response_b), r.label));
                let meta = judge.rows::<MetaExampleRow>()?.into_iter().map(|r| {
                    let shown =
                        format::judge_meta(&r.prompt, &r.response, &r.judgment_a, &r.judgment_b);
                    (shown, r.label)
                });
                judged.chain(meta).collect()
            }
            None if !data.tables.contains_key(EftRow::NAME) => Vec::new(),
            None => data
                .rows::<EftRow>()?
                .into_iter()
                .map(|r| {
                    (
                        judge_prompt(&r.prompt, &r.response_a, &r.response_b),
                        r.label,
                    )
                })
                .collect(),
        };
        texts.extend(judged);
    }
    for (prompt, response) in &texts {
        pairs.push(Pair {
            prompt: text.encode_prompt(prompt)?,
            response: text.encode_response(response, true)?,
        });
    }
    Ok(pairs)
}

/// A user's example (see the module docs).
fn user_example(text: &crate::model::Text, r: &SftExampleRow) -> anyhow::Result<Pair> {
    if !r.conversational {
        return Ok(Pair {
            prompt: text.encode_prompt(&r.prompt)?,
            response: text.encode_response(&r.completion, true)?,
        });
    }
    let messages: Vec<Message> = serde_json::from_str(&r.prompt).map_err(|e| {
        crate::internal_err!("sft_examples row {}: prompt is no message list: {e}", r.id)
    })?;
    let prompt = text.render_chat(&messages, true)?;
    let mut whole = messages.clone();
    whole.push(Message::assistant(r.completion.clone()));
    let rendered = text.render_chat(&whole, false)?;
    let Some(reply) = rendered.strip_prefix(prompt.as_str()) else {
        anyhow::bail!(crate::user_err!(
            "sft example {} (record {}): the chat template renders the conversation with its \
             reply so that it does not start with the conversation and the generation prompt, \
             so the reply's tokens cannot be told apart; use a standard prompt/completion \
             record or another chat template",
            r.id,
            r.record
        ));
    };
    // Without a chat template nothing ends the reply: EOS does, as for generated answers.
    let eos = text.chat_template().is_none();
    Ok(Pair {
        prompt: text.encode_chat_prompt(&messages)?,
        response: text.encode_response(reply, eos)?,
    })
}

/// The verdict strings of judge examples made from preferences: `A` names the first reply.
const VERDICTS: [&str; 2] = ["A", "B"];

/// Two pairwise judge examples per preference, one in each order, each answered with the
/// verdict that names `chosen` (then the template's close and EOS: [`judge::answer_ids`]).
fn preference_examples(
    text: &crate::model::Text,
    template: &JudgeTemplate,
    rows: &[PreferenceRow],
) -> anyhow::Result<Vec<Pair>> {
    let ids = [
        judge::single_token(text, VERDICTS[0], "verdict")?,
        judge::single_token(text, VERDICTS[1], "verdict")?,
    ];
    let mut out = Vec::with_capacity(2 * rows.len());
    for r in rows {
        let orders = [(&r.chosen, &r.rejected, 0), (&r.rejected, &r.chosen, 1)];
        for (a, b, verdict) in orders {
            let j = template.pairwise(&r.prompt, a, b)?;
            if out.is_empty() {
                judge::check_seam(text, &j, VERDICTS[verdict], ids[verdict])?;
            }
            out.push(Pair {
                prompt: judge::encode(text, &j)?,
                response: judge::answer_ids(text, &j, ids[verdict])?,
            });
        }
    }
    Ok(out)
}

/// The world's judge prompt for `a` alone (pointwise) or `a` vs `b` (pairwise).
fn judge_prompt(prompt: &str, a: &str, b: &Option<String>) -> String {
    match b {
        Some(b) => format::judge_pairwise(prompt, a, b),
        None => format::judge_pointwise(prompt, a),
    }
}
