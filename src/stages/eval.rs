//! `eval`: measure one model of the chain on the world's held-out sets.
//!
//! Glue around [`crate::eval::evaluate`]. Input slots (defaults in brackets):
//!
//! ```text
//! model      checkpoint  the model measured            [model@k]
//! baseline   checkpoint  M0, for the gold win rate      [model@0]
//! reference  checkpoint  the IRM reference              [model@initial]
//! heldout    tables      eval_prompts, gold_pairs       [heldout]
//! reward_model checkpoint an external RM (optional)      [unbound]
//! ```
//!
//! With `reward_model` bound (e.g. `model@reward_model` on eval-m0: the RM is fixed) the
//! RM's accuracy is reported beside the model's IRM and GRM: `rm_acc` on the gold pairs,
//! `sampled_rm_acc` on the model's own sampled pairs.
//!
//! The engine runs `each_iteration` stages at k = 1..=N, so M0 gets its own
//! run-once entry of the same kind; both write the same tables, at
//! iteration 0 and at k, so the public `eval` table holds every model:
//!
//! ```yaml
//! eval-m0: { kind: eval, inputs: { model: model@0 } }
//! eval:    { kind: eval, each_iteration: true }
//! ```
//!
//! The gold scorer and `gold_pairs` are read here and nowhere in training.
//! [`EvalLabels`] (`eval-labels@k`) gold-labels the iteration's own pairs
//! from the SCIR stages' tables; leave it out and those metrics are absent.

use super::common::slots;
use crate::table::Table;
use crate::tables::eval::{
    EvalLabelPairRow, EvalLabelRow, EvalMetricRow, EvalPairRow, EvalResponseRow,
};
use crate::tables::filter_pairs::FilterPairRow;
use crate::tables::judge_pairs::JudgePairRow;
use crate::tables::responses::ResponseRow;
use std::path::Path;

use candle_core::Device;

use crate::engine::stage::{DeclaredTable, ParamError, Slot, Stage, TaskContext};
use crate::eval::evaluate::{EvalParams, Models, evaluate};
use crate::eval::tables;
use crate::model::{Model, Weights};
use crate::world::tables::{EVAL_PROMPTS, GOLD_PAIRS};

/// The `eval` stage.
pub struct Eval;

const SLOTS: &[Slot] = &[
    slots::MK,
    Slot::checkpoint("baseline").by_default("model@0"),
    slots::INITIAL,
    Slot::tables("heldout").by_default("heldout"),
    Slot::checkpoint("reward_model").optional(),
];

impl Stage for Eval {
    type Params = EvalParams;
    /// Bump when eval's tables change for the same inputs and params.
    const VERSION: u32 = 5;
    const INPUTS: &'static [Slot] = SLOTS;
    const TABLES: &'static [DeclaredTable] = &[
        EvalMetricRow::declared,
        EvalResponseRow::declared,
        EvalPairRow::declared,
    ];

    fn validate(&self, p: &EvalParams) -> Result<(), ParamError> {
        validate(p)
    }
    fn run(&self, params: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let heldout = ctx.input("heldout")?;
        let prompts = tables::read_prompts(heldout.table(EVAL_PROMPTS)?)?;
        let pairs = tables::read_gold_pairs(heldout.table(GOLD_PAIRS)?)?;
        let model_dir = checkpoint(ctx, "model")?;
        let base_dir = checkpoint(ctx, "baseline")?;
        let ref_dir = checkpoint(ctx, "reference")?;
        let model = load(&model_dir)?;
        let baseline = if base_dir == model_dir {
            None
        } else {
            Some(load(&base_dir)?)
        };
        let reference = load(&ref_dir)?;
        let reward_model = match ctx.try_input("reward_model") {
            Some(_) => Some(load(&checkpoint(ctx, "reward_model")?)?),
            None => None,
        };
        let models = Models {
            model: &model,
            baseline: baseline.as_ref(),
            reference: &reference,
            reward_model: reward_model.as_ref(),
        };
        let out = evaluate(params, &models, &prompts, &pairs)?;
        for (name, mean) in &out.metrics {
            ctx.log(&format!("{name} = {:.4} (n = {})", mean.value, mean.n));
        }
        for (name, batch) in tables::batches(ctx.iteration, &out)? {
            ctx.write_table(&name, &batch)?;
        }
        Ok(())
    }
}

fn validate(p: &EvalParams) -> Result<(), ParamError> {
    let bad = |path: &str, message: &str| {
        Err(ParamError {
            path: path.into(),
            message: message.into(),
        })
    };
    if !(p.temperature > 0.0 && p.temperature.is_finite()) {
        return bad(
            "temperature",
            "must be positive (greedy is always measured too)",
        );
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return bad("top_p", "must be in (0, 1]");
    }
    if !(p.beta > 0.0 && p.beta.is_finite() && p.tau > 0.0 && p.tau.is_finite()) {
        return bad("", "beta and tau must be positive");
    }
    if !(0.0..0.5).contains(&p.delta) {
        return bad("delta", "must be in [0, 0.5)");
    }
    if p.samples == 0 || p.max_new_tokens == 0 || p.batch_size == 0 {
        return bad(
            "",
            "samples, max_new_tokens and batch_size must be at least 1",
        );
    }
    if !(2..=crate::world::params::MAX_SCORE_LEVELS).contains(&p.score_levels) {
        return bad("score_levels", "must be 2..=9 (the world's score_levels)");
    }
    Ok(())
}

fn checkpoint(ctx: &TaskContext, slot: &str) -> anyhow::Result<std::path::PathBuf> {
    let input = ctx.input(slot)?;
    input.checkpoint.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: input {slot} ({}) has no checkpoint",
            ctx.task,
            input.task
        )
    })
}

fn load(dir: &Path) -> anyhow::Result<Model> {
    Model::load(dir, Weights::Frozen, &Device::Cpu)
}

/// The `eval-labels` stage: the iteration's own pairs, gold-labelled, against
/// the preferences and labels the arm trained on ([`crate::eval::labels`]).
///
/// ```text
/// filter     tables      consistency-filter@k's filter_pairs   [consistency-filter@k]
/// responses  tables      generate@k's responses               [generate@k]
/// model      checkpoint  Mt, trained on those pairs           [model@k]
/// reference  checkpoint  the IRM reference                    [model@initial]
/// grm        tables      score-grm@k's judge_pairs            [score-grm@k]
/// ```
///
/// Params are eval's ([`EvalParams`]); it uses `beta`, `grm`, `tau`,
/// `delta`, `score_levels` and `batch_size` (set them as train/filter do).
pub struct EvalLabels;

impl Stage for EvalLabels {
    type Params = EvalParams;
    /// Bump when `eval_labels` changes for the same inputs.
    const VERSION: u32 = 4;
    const INPUTS: &'static [Slot] = &[
        Slot::tables("filter").by_default("consistency-filter@k"),
        Slot::tables("responses").by_default("generate@k"),
        slots::MK,
        slots::INITIAL,
        Slot::tables("grm").by_default("score-grm@k"),
    ];
    const TABLES: &'static [DeclaredTable] = &[EvalLabelRow::declared, EvalLabelPairRow::declared];

    fn validate(&self, p: &EvalParams) -> Result<(), ParamError> {
        validate(p)
    }
    fn run(&self, params: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        use crate::eval::labels;
        let filter = ctx
            .input("filter")?
            .table(FilterPairRow::NAME)?
            .to_path_buf();
        let responses = ctx
            .input("responses")?
            .table(ResponseRow::NAME)?
            .to_path_buf();
        let gold = labels::read_gold(&responses)?;
        let pairs = labels::own_pairs(&gold, &responses, &filter)?;
        let model = load(&checkpoint(ctx, "model")?)?;
        let reference = load(&checkpoint(ctx, "reference")?)?;
        let mut metrics = labels::label_metrics(&pairs);
        metrics.extend(labels::length_metrics(&pairs));
        metrics.extend(labels::trained_metrics(params, &model, &reference, &pairs)?);
        let judge_pairs: Vec<JudgePairRow> = ctx.input("grm")?.rows()?;
        metrics.extend(labels::judge_pair_metrics(
            &judge_pairs,
            &gold,
            params.score_levels,
        )?);
        for (name, mean) in &metrics {
            ctx.log(&format!("{name} = {:.4} (n = {})", mean.value, mean.n));
        }
        ctx.write_rows(labels::gold_rows(&pairs))?;
        ctx.write_rows(tables::label_rows(&metrics))
    }
}
