//! The training-loop skeleton `sft` and `train` share: a [`Stepper`] restored from the
//! task's resume area when there is one, a progress bar, one optimizer step at a time from
//! gradients (a non-finite loss stops the task), the step's metric row, and resume state
//! saved when due ([`super::resume`]). What a step computes is the stage's.
//!
//! ```text
//! let mut t = Training::<Row>::start(ctx, every, vars, total, "sft", new_stepper)?;
//! for step in t.done + 1..=total {           // t.resumed_at: where the data stopped
//!     let info = t.step("the SFT loss", loss, step, || Ok(grads))?;
//!     t.record(ctx, step, (epoch, position), row(info), message)?;
//! }
//! let rows = t.finish();
//! ```

use candle_core::Var;
use candle_core::backprop::GradStore;
use indicatif::ProgressBar;

use super::check_finite;
use super::resume::Resume;
use crate::engine::stage::TaskContext;
use crate::model::lora::{LoraConfig, LoraSet};
use crate::model::optim::AdamWParams;
use crate::model::schedule::{LrSchedule, ScheduleKind};
use crate::model::trainer::{StepInfo, Stepper, varmap_vars};
use crate::model::{Model, Weights};
use crate::table::Table;

/// How a training stage loads its model: frozen under LoRA (only the adapters train, and
/// the base weights get no gradient), trainable otherwise.
pub fn base_weights(lora: &Option<LoraConfig>) -> Weights {
    match lora {
        Some(_) => Weights::Frozen,
        None => Weights::Trainable,
    }
}

/// Named variables to train.
pub type Vars = Vec<(String, Var)>;

/// Fresh LoRA adapters attached to `model` when `lora` is set, and the variables to train:
/// the adapters', or every weight of the model. Merge the adapters before saving
/// ([`Model::merge_lora`]).
pub fn trainable(
    model: &mut Model,
    lora: &Option<LoraConfig>,
) -> anyhow::Result<(Option<LoraSet>, Vars)> {
    match lora {
        Some(cfg) => {
            let set = LoraSet::attach(cfg.clone(), &mut model.decoder, candle_core::DType::F32)?;
            let vars = set.named_vars();
            Ok((Some(set), vars))
        }
        None => Ok((None, varmap_vars(&model.varmap)?)),
    }
}

/// The optimizer settings of a training stage (its params' names).
pub struct Optimizer {
    pub lr: f64,
    pub schedule: ScheduleKind,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
}

/// A training loop in progress.
pub struct Training<M> {
    stepper: Stepper,
    resume: Resume,
    vars: Vars,
    rows: Vec<M>,
    total: u64,
    bar: ProgressBar,
    /// Optimizer steps already done (restored from the resume area; 0 on a fresh start).
    pub done: u64,
    /// `(epoch, data position)` where the restored run stopped.
    pub resumed_at: Option<(u64, u64)>,
}

impl<M: Table + Clone> Training<M> {
    /// A loop of `total` optimizer steps over `vars`; `new` builds a fresh stepper.
    pub fn start(
        ctx: &mut TaskContext,
        resume_every: u64,
        vars: Vars,
        total: u64,
        what: &str,
        new: impl Fn() -> anyhow::Result<Stepper>,
    ) -> anyhow::Result<Training<M>> {
        let resume = Resume::open(ctx, resume_every)?;
        let (stepper, resumed) = resume.start::<M>(ctx, &vars, new)?;
        let (done, resumed_at, rows) = match resumed {
            Some(r) => (
                r.state.global_step,
                Some((r.state.epoch, r.state.data_position)),
                r.metrics,
            ),
            None => (0, None, Vec::new()),
        };
        let bar = ctx.progress(total, what);
        bar.set_position(done);
        Ok(Training {
            stepper,
            resume,
            vars,
            rows,
            total,
            bar,
            done,
            resumed_at,
        })
    }

    /// [`Training::start`] with AdamW under `opt`'s learning-rate schedule over `total`
    /// steps and its gradient clipping: what every training stage optimizes with.
    pub fn with_adamw(
        ctx: &mut TaskContext,
        resume_every: u64,
        vars: Vars,
        total: u64,
        what: &str,
        opt: &Optimizer,
    ) -> anyhow::Result<Training<M>> {
        let schedule = LrSchedule::new(opt.schedule, opt.lr, opt.warmup_steps, total)?;
        let adamw = AdamWParams {
            lr: opt.lr,
            weight_decay: opt.weight_decay,
            ..AdamWParams::default()
        };
        let clip = Some(opt.max_grad_norm);
        let stepper_vars = vars.clone();
        let new = move || Stepper::new(stepper_vars.clone(), adamw, schedule, clip);
        Self::start(ctx, resume_every, vars, total, what, new)
    }

    /// Optimizer step `step` from the gradients `grads` computes, of a loss worth `loss`
    /// (checked first: `what` names it in the error when it is not finite).
    pub fn step(
        &mut self,
        what: &str,
        loss: f64,
        step: u64,
        grads: impl FnOnce() -> anyhow::Result<Vec<GradStore>>,
    ) -> anyhow::Result<StepInfo> {
        check_finite(what, loss, step)?;
        for g in &grads()? {
            self.stepper.accumulate(g)?;
        }
        self.stepper.step()
    }

    /// Record step `step`'s metric row; save resume state when due (at `(epoch,
    /// position)` of the data); show `message`.
    pub fn record(
        &mut self,
        seed: u64,
        step: u64,
        at: (u64, u64),
        row: M,
        message: String,
    ) -> anyhow::Result<()> {
        self.rows.push(row);
        let rows = &self.rows;
        self.resume.after_step(
            seed,
            (step, self.total),
            at,
            &self.stepper,
            &self.vars,
            || rows.clone(),
        )?;
        self.bar.set_message(message);
        self.bar.inc(1);
        Ok(())
    }

    /// The metric rows of every step, restored ones first.
    pub fn finish(self) -> Vec<M> {
        self.bar.finish_and_clear();
        self.rows
    }
}
