//! `train@k`: from Mt, writes Mt+1 on the pairs of `consistency-filter@k`.
//!
//! * `method: scir` (default): every step, with the current θ, computes the
//!   IRM `p` (policy log-probs against the cached IRM-reference log-probs,
//!   score-irm's β) and the GRM `q` (the stored judge prompts, pairwise
//!   swap-averaged or pointwise), selects the consistent pairs
//!   ([`crate::loss::select_pair`] with `delta`), and minimises
//!   `L = mean_consistent(L_dpo) + λ·mean_all(L_con)` ([`crate::loss::scir_loss`];
//!   `consistency.loss: symmetric_kl | agreement_nll`, `consistency.grad:
//!   both | irm_only`, γ weights the entropy term).
//!   `selection: static` (ablation) replaces the per-step choice with the
//!   filter's labels (run the filter with `mode: static`).
//! * `method: srlm`: plain DPO on the filter's fixed labels (no consistency
//!   loss).
//! * `method: cream`: CREAM's consistency-regularised DPO on the filter's pairs
//!   (`mode: cream`): `C·L_dpo(y⁺, y⁻) + (1 − C)·L_dpo(y⁻, y⁺)` with each pair's `C`
//!   from the filter's `cream_prompts` ([`crate::loss::cream`]).
//!
//! `judge_pairs: true` (Meta-Rewarding, with `method: srlm`) adds score-grm's
//! `judge_pairs` (the judge role's pairs: a judge prompt, the meta-judge's preferred
//! judgment ≻ its least preferred) to the actor pairs, one DPO training set shuffled
//! together; their reference log-probs are Mt's, computed once before the first step.
//! `judge_share: s` caps them at a fraction `s` of that set, keeping the pairs whose
//! judgments the meta-judge separated most (off by default: shares 0.15 and 0.30 did no
//! better than uncapped on seeds 1–3, docs/results/methods.md).
//!
//! Length control (docs/algorithm.md): `alpha` is R-DPO's length term in the DPO loss of
//! both methods; score-irm's `norm: mean` makes the per-step `p` compare per-token
//! log-ratios; a label the filter forced (`unfinished: lose`) holds under per-step
//! selection too.
//!
//! The DPO reference log-probs are score-irm's `logp_policy` (Mt), never
//! recomputed. Pairs are visited in a seeded shuffle per epoch, `batch_size`
//! per optimizer step, AdamW with a schedule and clipping. A non-finite loss
//! or gradient stops the task with an error, and nothing is committed.
//!
//! `resume_every: N` (default 50; 0: never) saves the training state every N
//! optimizer steps into the task's resume area; a killed task continues from
//! there on the next run and ends bit-identical ([`common::resume`]; not part
//! of the key).
//!
//! `lora: { rank, alpha, target_modules }` trains LoRA adapters only (the
//! base weights stay fixed) and merges them into the saved Mt+1.
//!
//! Defaults of the params (docs/algorithm.md, "Defaults and why"): lr 5e-5 constant,
//! 1 epoch, batch 16, β 0.1, λ 1, γ 0.1, δ 0, α 0, symmetric KL, grad through both (the
//! default pipeline sets `irm_only`).
//!
//! Writes Mt+1 and [`train_metrics`](crate::tables::train_metrics).

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::common::irm::IrmNorm;
use super::common::resume;
use super::common::slots;
use super::common::train_data::{self, TrainData, TrainPair};
use super::common::training::{self, Optimizer, Training};
use super::common::{self, judge};
use crate::engine::stage::{DeclaredTable, ParamError, Slot, Stage, TaskContext};
use crate::loss::cream::cream_dpo;
use crate::loss::{
    ConsistencyGrad, ConsistencyKind, DpoMetrics, DpoOutput, Lengths, LogBernoulli, PairLogps,
    Pick, Preferred, ScirLossConfig, dpo_sigmoid_offset, scir_loss_with,
};
use crate::model::lora::LoraConfig;
use crate::model::schedule::ScheduleKind;
use crate::model::score::Pair;
use crate::model::train_state::epoch_batches;
use crate::model::trainer::StepOutputs;
use crate::table::Table;
use crate::tables::grm_scores::GrmMode;
use crate::tables::train_metrics::TrainMetricRow;

/// Training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Scir,
    Srlm,
    Cream,
}

/// How `scir` picks the pairs and labels DPO trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Every step, with the current θ (the paper's method).
    #[default]
    Dynamic,
    /// Once, before training: the filter's labels (pairs it left unlabelled
    /// train only through the consistency loss). The ablation of dynamic
    /// selection; pair it with `consistency-filter: { mode: static }`.
    Static,
}

/// The consistency-loss knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsistencyParams {
    pub loss: ConsistencyKind,
    pub grad: ConsistencyGrad,
}

/// Params of `train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainParams {
    pub method: Method,
    pub lr: f64,
    pub epochs: u64,
    pub batch_size: usize,
    pub schedule: ScheduleKind,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// DPO β.
    pub beta: f64,
    /// R-DPO's α: DPO's logits get `α·(|y_w| − |y_l|)` (tokens); 0: plain DPO.
    pub alpha: f64,
    /// λ: weight of the consistency loss (scir).
    pub lambda: f64,
    /// γ: weight of the entropy term (scir, symmetric_kl).
    pub gamma: f64,
    /// δ: margin of the per-step selection rule (scir).
    pub delta: f64,
    /// `dynamic` (per step) or `static` (the filter's labels) selection (scir).
    pub selection: Selection,
    pub consistency: ConsistencyParams,
    /// Train LoRA adapters instead of every weight (merged into Mt+1 on save).
    pub lora: Option<LoraConfig>,
    /// Also train on score-grm's judge pairs (Meta-Rewarding; method srlm).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub judge_pairs: bool,
    /// With `judge_pairs`: at most this fraction of the training set are judge pairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge_share: Option<f64>,
    /// Save resume state every this many optimizer steps (0: never; not in the key).
    pub resume_every: u64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            method: Method::Scir,
            lr: 5e-5,
            epochs: 1,
            batch_size: 16,
            schedule: ScheduleKind::Constant,
            warmup_steps: 0,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            beta: 0.1,
            alpha: 0.0,
            lambda: 1.0,
            gamma: 0.1,
            delta: 0.0,
            selection: Selection::Dynamic,
            consistency: ConsistencyParams::default(),
            lora: None,
            judge_pairs: false,
            judge_share: None,
            resume_every: resume::DEFAULT_EVERY,
        }
    }
}

/// The `train` stage.
pub struct Train;

impl Stage for Train {
    type Params = TrainParams;
    /// Bump when the output changes for the same inputs and params (4: LoRA on the fast
    /// path; 5: both judge orders in one call, shared prefixes computed once under LoRA).
    const VERSION: u32 = 5;
    const INPUTS: &'static [Slot] = &[
        slots::MT,
        slots::GENERATION,
        slots::IRM,
        slots::GRM,
        Slot::tables("filter").by_default("consistency-filter"),
    ];
    const TABLES: &'static [DeclaredTable] = &[TrainMetricRow::declared];
    const CHECKPOINT: bool = true;
    const UNKEYED_PARAMS: &'static [&'static str] = &[resume::PARAM];

    fn validate(&self, p: &TrainParams) -> Result<(), ParamError> {
        loss_config(p, 1.0)
            .validate()
            .map_err(|e| ParamError::at("", e.to_string()))?;
        if p.batch_size == 0 {
            return Err(ParamError::at("batch_size", "must be at least 1"));
        }
        if p.judge_pairs && p.method != Method::Srlm {
            return Err(ParamError::at(
                "judge_pairs",
                "judge pairs train with plain DPO beside the actor pairs: set `method: srlm`",
            ));
        }
        match p.judge_share {
            Some(s) if !(0.0..1.0).contains(&s) => {
                return Err(ParamError::at(
                    "judge_share",
                    format!("must be in [0, 1), got {s}"),
                ));
            }
            Some(_) if !p.judge_pairs => {
                return Err(ParamError::at(
                    "judge_share",
                    "caps the judge pairs: set `judge_pairs: true` or remove judge_share",
                ));
            }
            _ => {}
        }
        if p.method == Method::Cream && p.alpha != 0.0 {
            return Err(ParamError::at(
                "alpha",
                "R-DPO's length term applies to methods scir and srlm; remove alpha",
            ));
        }
        Ok(())
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        // Under LoRA the base weights stay plain tensors: no gradient is computed for them,
        // and the merged weights are written at the end.
        let mut model = common::load_model(ctx.input("model")?, training::base_weights(&p.lora))?;
        let mut data = train_data::load(ctx)?;
        if p.judge_pairs {
            // Before adapters are attached: the reference log-probs of the (long) judge
            // prompts then take the fast path, not candle's graph.
            let keep = p
                .judge_share
                .map(|s| train_data::judge_cap(s, data.pairs.len()));
            let judged = train_data::judge_pairs(ctx, &model, keep)?;
            ctx.log(&format!("{} judge pairs", judged.len()));
            data.pairs.extend(judged);
        }
        let (lora, vars) = training::trainable(&mut model, &p.lora)?;
        if p.method == Method::Scir && data.judge.token_ids.is_empty() {
            anyhow::bail!(crate::user_err!(
                "{}: method scir re-judges every pair with the model being trained, and this \
                 arm's judge is a reward model (no judge tokens); use `method: srlm` with \
                 `consistency-filter: {{ mode: grm_only }}`",
                ctx.task
            ));
        }
        let n = data.pairs.len();
        let steps_per_epoch = n.div_ceil(p.batch_size) as u64;
        let total = steps_per_epoch * p.epochs;
        ctx.log(&format!("{n} training pairs, {total} steps"));
        let opt = Optimizer {
            lr: p.lr,
            schedule: p.schedule,
            warmup_steps: p.warmup_steps.min(total),
            weight_decay: p.weight_decay,
            max_grad_norm: p.max_grad_norm,
        };
        let mut training = Training::<TrainMetricRow>::with_adamw(
            ctx,
            p.resume_every,
            vars,
            total,
            "train",
            &opt,
        )?;
        let batches = epoch_batches(n, p.batch_size, p.epochs, ctx.seed);
        for b in batches.skip(training.done as usize) {
            let batch: Vec<&TrainPair> = b.items.iter().map(|&i| &data.pairs[i]).collect();
            let mut outputs = StepOutputs::new(&model.decoder, model.text.pad_id());
            let (loss, m) = match p.method {
                Method::Scir => scir_batch(&mut outputs, &data, &batch, p)?,
                Method::Srlm => srlm_batch(&mut outputs, &batch, p)?,
                Method::Cream => cream_batch(ctx, &mut outputs, &batch, p)?,
            };
            let info = training.step("the training loss", m.loss, b.step, || {
                Ok(vec![outputs.gradients(&loss)?])
            })?;
            let row = m.row(b.step, b.epoch, batch.len(), info.lr, info.grad_norm);
            let message = format!("{} loss {:.4}", ctx.task, m.loss);
            training.record(ctx.seed, b.step, (b.epoch, b.position), row, message)?;
        }
        let rows = training.finish();
        if let Some(set) = &lora {
            model.merge_lora(set)?;
        }
        model.save(&ctx.checkpoint_dir()?)?;
        ctx.write_rows(rows)
    }
}

fn loss_config(p: &TrainParams, irm_beta: f64) -> ScirLossConfig {
    ScirLossConfig {
        beta: p.beta,
        irm_beta,
        lambda: p.lambda,
        gamma: p.gamma,
        delta: p.delta,
        kind: p.consistency.loss,
        grad: p.consistency.grad,
    }
}

/// One step's metrics, before the step's bookkeeping joins them in a [`TrainMetricRow`].
#[derive(Debug, Clone, Default)]
struct Metrics {
    loss: f64,
    dpo: DpoMetrics,
    loss_dpo: Option<f64>,
    loss_consistency: Option<f64>,
    selected_frac: Option<f64>,
    agreement: Option<f64>,
}

impl Metrics {
    /// The table row of optimizer step `step`.
    fn row(&self, step: u64, epoch: u64, pairs: usize, lr: f64, grad_norm: f64) -> TrainMetricRow {
        let d = self.dpo;
        TrainMetricRow {
            step: step as i32,
            epoch: epoch as i32,
            pairs: pairs as i32,
            loss: Some(self.loss),
            rewards_chosen: d.rewards_chosen,
            rewards_rejected: d.rewards_rejected,
            rewards_accuracies: d.rewards_accuracies,
            rewards_margins: d.rewards_margins,
            logps_chosen: d.logps_chosen,
            logps_rejected: d.logps_rejected,
            loss_dpo: self.loss_dpo,
            loss_consistency: self.loss_consistency,
            selected_frac: self.selected_frac,
            agreement: self.agreement,
            lr,
            grad_norm,
        }
    }
}

/// `(logπθ(y1), logπθ(y2))` of a batch, `(n,)` each, differentiable.
fn policy_logps(out: &mut StepOutputs, batch: &[&TrainPair]) -> anyhow::Result<(Tensor, Tensor)> {
    let mut items: Vec<Pair> = batch
        .iter()
        .map(|p| Pair {
            prompt: p.prompt.clone(),
            response: p.y1.clone(),
        })
        .collect();
    items.extend(batch.iter().map(|p| Pair {
        prompt: p.prompt.clone(),
        response: p.y2.clone(),
    }));
    let lp = out.response_logprobs(&items)?;
    let n = batch.len();
    Ok((lp.narrow(0, 0, n)?, lp.narrow(0, n, n)?))
}

fn host(v: Vec<f64>) -> anyhow::Result<Tensor> {
    let n = v.len();
    Ok(Tensor::from_vec(v, n, &common::device())?)
}

/// q under the current θ from the stored judge prompts.
fn grm_preference(
    out: &mut StepOutputs,
    data: &TrainData,
    batch: &[&TrainPair],
) -> anyhow::Result<LogBernoulli> {
    let j = &data.judge;
    let n = batch.len();
    let first: Vec<Vec<u32>> = batch.iter().map(|p| p.judge_1.clone()).collect();
    let second: Option<Vec<Vec<u32>>> = batch.iter().map(|p| p.judge_2.clone()).collect();
    // Both prompts of a pair in one call: they share their start (the template and the
    // question), which the fast path then computes once.
    let both = |second: &[Vec<u32>]| [first.as_slice(), second].concat();
    if j.mode == GrmMode::Pointwise {
        let second = second.ok_or_else(|| anyhow::anyhow!("pointwise judge prompt missing"))?;
        let s =
            judge::expected_scores_of(&out.last_logits(&both(&second), &j.token_ids)?, &j.values)?;
        let (s1, s2) = (s.narrow(0, 0, n)?, s.narrow(0, n, n)?);
        return Ok(LogBernoulli::grm_pointwise(&s1, &s2, j.tau)?);
    }
    let (a, b) = (j.token_ids[0], j.token_ids[1]);
    let (gap_ab, gap_ba) = match second {
        Some(s) => {
            let gaps = out.verdict_logit_gaps(&both(&s), (a, b))?;
            (gaps.narrow(0, 0, n)?, Some(gaps.narrow(0, n, n)?))
        }
        None => (out.verdict_logit_gaps(&first, (a, b))?, None),
    };
    Ok(LogBernoulli::grm_pairwise(&gap_ab, gap_ba.as_ref())?)
}

/// The batch's response lengths, when a length control needs them.
fn lengths(batch: &[&TrainPair], irm_mean: bool, alpha: f64) -> anyhow::Result<Option<Lengths>> {
    if !irm_mean && alpha == 0.0 {
        return Ok(None);
    }
    let len =
        |y: fn(&TrainPair) -> &Vec<u32>| host(batch.iter().map(|b| y(b).len() as f64).collect());
    Ok(Some(Lengths {
        y1: len(|b| &b.y1)?,
        y2: len(|b| &b.y2)?,
        irm_mean,
        alpha,
    }))
}

fn scir_batch(
    out: &mut StepOutputs,
    data: &TrainData,
    batch: &[&TrainPair],
    p: &TrainParams,
) -> anyhow::Result<(Tensor, Metrics)> {
    let (py1, py2) = policy_logps(out, batch)?;
    let q = grm_preference(out, data, batch)?;
    let logps = PairLogps {
        policy_y1: py1,
        policy_y2: py2,
        dpo_ref_y1: host(batch.iter().map(|b| b.dpo_ref[0]).collect())?,
        dpo_ref_y2: host(batch.iter().map(|b| b.dpo_ref[1]).collect())?,
        irm_ref_y1: host(batch.iter().map(|b| b.irm_ref[0]).collect())?,
        irm_ref_y2: host(batch.iter().map(|b| b.irm_ref[1]).collect())?,
        lengths: lengths(batch, data.irm_norm == IrmNorm::Mean, p.alpha)?,
    };
    let labels: Vec<Option<Preferred>> = batch.iter().map(|b| b.label).collect();
    let forced: Vec<Option<Preferred>> =
        batch.iter().map(|b| b.label.filter(|_| b.forced)).collect();
    let pick = match p.selection {
        Selection::Static => Pick::Fixed(&labels),
        Selection::Dynamic if forced.iter().any(Option::is_some) => Pick::DynamicExcept(&forced),
        Selection::Dynamic => Pick::Dynamic,
    };
    let out = scir_loss_with(&logps, &q, &loss_config(p, data.irm_beta), pick)?;
    let m = out.metrics;
    Ok((
        out.loss,
        Metrics {
            loss: m.loss,
            dpo: m.dpo,
            loss_dpo: Some(m.loss_dpo),
            loss_consistency: Some(m.loss_consistency),
            selected_frac: Some(m.selected_frac),
            agreement: Some(m.agreement),
        },
    ))
}

/// `[πc, πr, ρc, ρr]` of a batch by the filter's fixed labels (y1 without one), and R-DPO's
/// length offset `α·(|y_c| − |y_r|)` when α ≠ 0.
fn labelled_logps(
    out: &mut StepOutputs,
    batch: &[&TrainPair],
    alpha: f64,
) -> anyhow::Result<([Tensor; 4], Option<Tensor>)> {
    let (py1, py2) = policy_logps(out, batch)?;
    let y1_wins: Vec<u8> = batch
        .iter()
        .map(|b| u8::from(b.label != Some(Preferred::Y2)))
        .collect();
    let mask = Tensor::new(y1_wins.as_slice(), &common::device())?;
    let pick = |a: &Tensor, b: &Tensor| -> candle_core::Result<(Tensor, Tensor)> {
        Ok((mask.where_cond(a, b)?, mask.where_cond(b, a)?))
    };
    let (pc, pr) = pick(&py1, &py2)?;
    let r1 = host(batch.iter().map(|b| b.dpo_ref[0]).collect())?.to_dtype(DType::F32)?;
    let r2 = host(batch.iter().map(|b| b.dpo_ref[1]).collect())?.to_dtype(DType::F32)?;
    let (rc, rr) = pick(&r1, &r2)?;
    let offset = match lengths(batch, false, alpha)? {
        Some(l) => {
            let (lc, lr) = pick(&l.y1.to_dtype(DType::F32)?, &l.y2.to_dtype(DType::F32)?)?;
            Some(((lc - lr)? * alpha)?)
        }
        None => None,
    };
    Ok(([pc, pr, rc, rr], offset))
}

fn srlm_batch(
    out: &mut StepOutputs,
    batch: &[&TrainPair],
    p: &TrainParams,
) -> anyhow::Result<(Tensor, Metrics)> {
    let ([pc, pr, rc, rr], offset) = labelled_logps(out, batch, p.alpha)?;
    let out = dpo_sigmoid_offset([&pc, &pr, &rc, &rr], p.beta, 0.0, offset.as_ref())?;
    dpo_step(&out, &pc, &pr)
}

/// CREAM: the labelled pairs' DPO loss weighted by their prompts' consistency `C`.
fn cream_batch(
    ctx: &TaskContext,
    out: &mut StepOutputs,
    batch: &[&TrainPair],
    p: &TrainParams,
) -> anyhow::Result<(Tensor, Metrics)> {
    let c: Option<Vec<f64>> = batch.iter().map(|b| b.cream_consistency).collect();
    let Some(c) = c else {
        anyhow::bail!(crate::user_err!(
            "{}: method cream trains on the pairs of consistency-filter's `mode: cream`, and \
             this filter ran in another mode; set `consistency-filter: {{ mode: cream }}` in \
             the same arm",
            ctx.task
        ));
    };
    let ([pc, pr, rc, rr], _) = labelled_logps(out, batch, 0.0)?;
    let losses = cream_dpo([&pc, &pr, &rc, &rr], p.beta, &host(c)?)?;
    let out = DpoOutput {
        losses,
        chosen_rewards: ((&pc - &rc)? * p.beta)?.detach(),
        rejected_rewards: ((&pr - &rr)? * p.beta)?.detach(),
    };
    dpo_step(&out, &pc, &pr)
}

/// A DPO-family step's mean loss and metrics.
fn dpo_step(out: &DpoOutput, pc: &Tensor, pr: &Tensor) -> anyhow::Result<(Tensor, Metrics)> {
    let dpo = DpoMetrics::compute(out, pc, pr)?;
    let loss = out.losses.mean_all()?;
    let value = f64::from(loss.to_scalar::<f32>()?);
    Ok((
        loss,
        Metrics {
            loss: value,
            dpo,
            loss_dpo: Some(value),
            ..Metrics::default()
        },
    ))
}
