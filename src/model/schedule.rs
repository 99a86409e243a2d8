//! Learning-rate schedules, matching Hugging Face transformers' `LambdaLR` schedules.
//!
//! `lr(step) = base_lr · factor(step)`, where `step` is the number of optimizer steps
//! already taken (0 for the first update). As in transformers, the first update of a
//! run with warmup therefore uses `lr = 0`.
//!
//! * `constant`: `1`.
//! * `constant_with_warmup` (`get_constant_schedule_with_warmup`):
//!   `step / max(1, warmup)` while `step < warmup`, then `1`.
//! * `linear` (`get_linear_schedule_with_warmup`, TRL's default): warmup as above, then
//!   `max(0, (total − step) / max(1, total − warmup))`.
//! * `cosine` (`get_cosine_schedule_with_warmup`, `num_cycles = 0.5`): warmup as above,
//!   then `max(0, ½·(1 + cos(π · 2·cycles · progress)))` with
//!   `progress = (step − warmup) / max(1, total − warmup)`, clamped to 1 (transformers
//!   lets the cosine rise again past `total_steps`; scir stays at 0 there).

use anyhow::{Result, bail};

/// Which shape the schedule has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// The base rate throughout.
    Constant,
    /// Linear warmup, then the base rate.
    ConstantWithWarmup,
    /// Linear warmup, then linear decay to 0 at `total_steps`.
    Linear,
    /// Linear warmup, then half a cosine down to 0 at `total_steps`.
    Cosine,
}

/// transformers' default `num_cycles` for the cosine schedule.
const COSINE_CYCLES: f64 = 0.5;

/// A learning-rate schedule (validated: see [`LrSchedule::new`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    kind: ScheduleKind,
    base_lr: f64,
    warmup_steps: u64,
    total_steps: u64,
}

impl LrSchedule {
    /// A schedule; `base_lr` must be finite and ≥ 0 and `warmup_steps ≤ total_steps`.
    pub fn new(
        kind: ScheduleKind,
        base_lr: f64,
        warmup_steps: u64,
        total_steps: u64,
    ) -> Result<Self> {
        if !(base_lr.is_finite() && base_lr >= 0.0) {
            bail!(crate::user_err!(
                "learning rate must be a finite number ≥ 0, got {base_lr}"
            ));
        }
        if warmup_steps > total_steps {
            bail!(crate::user_err!(
                "warmup_steps ({warmup_steps}) exceeds the total number of steps ({total_steps})"
            ));
        }
        Ok(Self {
            kind,
            base_lr,
            warmup_steps,
            total_steps,
        })
    }

    /// The multiplier of the base rate after `step` optimizer steps.
    pub fn factor(&self, step: u64) -> f64 {
        let (warmup, total) = (self.warmup_steps, self.total_steps);
        if self.kind == ScheduleKind::Constant {
            return 1.0;
        }
        if step < warmup {
            return step as f64 / warmup.max(1) as f64;
        }
        let decay_len = total.saturating_sub(warmup).max(1) as f64;
        match self.kind {
            ScheduleKind::Constant | ScheduleKind::ConstantWithWarmup => 1.0,
            ScheduleKind::Linear => (total as f64 - step as f64).max(0.0) / decay_len,
            ScheduleKind::Cosine => {
                let progress = ((step - warmup) as f64 / decay_len).min(1.0);
                let angle = std::f64::consts::PI * COSINE_CYCLES * 2.0 * progress;
                (0.5 * (1.0 + angle.cos())).max(0.0)
            }
        }
    }

    /// The learning rate for the update after `step` optimizer steps.
    pub fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.factor(step)
    }
}
