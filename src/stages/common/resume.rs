//! Resumable training: what `train` and `sft` save every `resume_every`
//! optimizer steps into the task's resume area, and how they continue.
//!
//! ```text
//! .scir/resume/<key>/                     TaskContext::resume_dir (engine-owned)
//!     state/                              train_state::save_checkpoint (atomic dir swap):
//!         trainer_state.json              step, epoch, data position, RNG, optimizer params
//!         optimizer.safetensors           AdamW moments and step
//!         params.safetensors              the trainable tensors
//!     metrics-<step>.parquet              the metric rows of steps 1..=step (the stage's
//!                                         metrics table: exact floats)
//! ```
//!
//! The area is keyed by the task key, so a rerun only ever resumes the very
//! same computation (same inputs, params and seed). The metrics file is
//! written before the state dir it belongs to, so the state dir always has
//! its metrics file. Everything is restored bit-exactly, so a task killed
//! after step k and resumed ends with the same bytes as one that never
//! stopped. A resume area that does not load (damaged, older format) is
//! logged, removed, and training starts from step 0. `resume_every` is not
//! part of the task key: it does not change the result.

use std::path::{Path, PathBuf};

use candle_core::Var;

use crate::engine::stage::TaskContext;
use crate::model::optim::AdamW;
use crate::model::train_state::{self, TRAINER_STATE_FILE, TrainerState};
use crate::model::trainer::Stepper;
use crate::table::{self, Table};

/// The param name (not part of the key; see [`crate::engine::stage::Stage::UNKEYED_PARAMS`]).
pub const PARAM: &str = "resume_every";
/// Its default: save every this many optimizer steps.
pub const DEFAULT_EVERY: u64 = 50;
const STATE_DIR: &str = "state";

/// A training stage's resume area.
pub struct Resume {
    dir: PathBuf,
    every: u64,
}

/// What a resumed run continues from.
pub struct Resumed<M> {
    pub state: TrainerState,
    /// The metric rows of the steps done.
    pub metrics: Vec<M>,
}

impl Resume {
    /// The area of `ctx`'s task; saves every `every` steps (0: never).
    pub fn open(ctx: &TaskContext, every: u64) -> anyhow::Result<Resume> {
        Ok(Resume {
            dir: ctx.resume_dir()?,
            every,
        })
    }

    /// A stepper from `new`, with the saved state loaded into it and into
    /// `params` when there is usable state.
    pub fn start<M: Table>(
        &self,
        ctx: &mut TaskContext,
        params: &[(String, Var)],
        new: impl Fn() -> anyhow::Result<Stepper>,
    ) -> anyhow::Result<(Stepper, Option<Resumed<M>>)> {
        let mut stepper = new()?;
        match self.load(ctx, stepper.optimizer_mut(), params) {
            Some(r) => Ok((stepper, Some(r))),
            // A failed load may have half-filled the optimizer: start clean.
            None => Ok((new()?, None)),
        }
    }

    /// After optimizer step `step` of `total` (at `epoch`, `position`; see
    /// [`state`]): save when due.
    pub fn after_step<M: Table>(
        &self,
        seed: u64,
        (step, total): (u64, u64),
        (epoch, position): (u64, u64),
        stepper: &Stepper,
        params: &[(String, Var)],
        metrics: impl FnOnce() -> Vec<M>,
    ) -> anyhow::Result<()> {
        if self.due(step, total) {
            let s = state(seed, step, epoch, position, stepper.optimizer());
            self.save(&s, stepper.optimizer(), params, metrics())?;
        }
        crate::failpoint::hit(crate::failpoint::site::TRAIN_STEP);
        Ok(())
    }

    /// Whether to save after optimizer step `step` of `total`.
    pub fn due(&self, step: u64, total: u64) -> bool {
        self.every > 0 && step.is_multiple_of(self.every) && step < total
    }

    /// Save the state after a step (see the module docs for the order).
    pub fn save<M: Table>(
        &self,
        state: &TrainerState,
        opt: &AdamW,
        params: &[(String, Var)],
        metrics: Vec<M>,
    ) -> anyhow::Result<()> {
        let step = state.global_step;
        let path = self.metrics_path(step);
        let tmp = path.with_extension("parquet.tmp");
        table::write(&tmp, &[M::batch(0, metrics)?])?;
        std::fs::rename(&tmp, &path)?;
        train_state::save_checkpoint(&self.dir.join(STATE_DIR), state, opt, params)?;
        for old in crate::engine::files::read_dir_sorted(&self.dir)? {
            if old.is_file() && old != self.metrics_path(step) {
                std::fs::remove_file(&old)?;
            }
        }
        Ok(())
    }

    /// Load saved state into `opt` and `params`, if there is any. On a damaged
    /// area the error is logged, the area removed and `None` returned; `opt`
    /// may then be half-loaded (rebuild it) but `params` are untouched.
    pub fn load<M: Table>(
        &self,
        ctx: &mut TaskContext,
        opt: &mut AdamW,
        params: &[(String, Var)],
    ) -> Option<Resumed<M>> {
        let state_dir = self.dir.join(STATE_DIR);
        if !state_dir.join(TRAINER_STATE_FILE).is_file() {
            return None;
        }
        match self.try_load(&state_dir, opt, params) {
            Ok(r) => {
                ctx.log(&format!(
                    "resumed from step {} ({})",
                    r.state.global_step,
                    state_dir.display()
                ));
                Some(r)
            }
            Err(e) => {
                ctx.log(&format!("resume state not usable, starting over: {e:#}"));
                let _ = std::fs::remove_dir_all(&self.dir);
                let _ = std::fs::create_dir_all(&self.dir);
                None
            }
        }
    }

    fn try_load<M: Table>(
        &self,
        state_dir: &Path,
        opt: &mut AdamW,
        params: &[(String, Var)],
    ) -> anyhow::Result<Resumed<M>> {
        let text = std::fs::read_to_string(state_dir.join(TRAINER_STATE_FILE))?;
        let peek: TrainerState = serde_json::from_str(&text)?;
        let metrics = M::read_path(&self.metrics_path(peek.global_step))?;
        let state = train_state::load_checkpoint(state_dir, opt, params)?;
        Ok(Resumed { state, metrics })
    }

    fn metrics_path(&self, step: u64) -> PathBuf {
        self.dir
            .join(format!("metrics-{step}.{}", table::EXTENSION))
    }
}

/// The trainer state after optimizer step `step`, `position` examples into
/// epoch `epoch` (for `sft`: `epoch` orders drawn so far).
pub fn state(seed: u64, step: u64, epoch: u64, position: u64, opt: &AdamW) -> TrainerState {
    let mut s = TrainerState::start(seed, &unused_rng(seed), *opt.params());
    s.global_step = step;
    s.epoch = epoch;
    s.data_position = position;
    s
}

/// A placeholder RNG state for stages that draw no random numbers while
/// training (data order is `epoch_order(seed, epoch)`).
pub fn unused_rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand_core::SeedableRng::seed_from_u64(seed)
}
