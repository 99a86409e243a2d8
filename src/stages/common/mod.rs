//! Helpers shared by the stages; no stage imports another stage, they share these.
//!
//! ```text
//! answering            answer conversations with a model (generate, answers, export)
//! irm                  the implicit reward: log-probs, the IRM reference, score-irm's params
//! grm                  the model as a judge of pairs, score-grm's params
//! judge                judge templates and verdict/score tokens (grm, grm-winrate, train)
//! train_data           train@k's training set, joined by pair_id from upstream tables
//! trained_consistency  the IRM/GRM agreement on the previous iteration's trained pairs
//! resume               resumable training (sft, train)
//! training             the training-loop skeleton sft and train share
//! ```
//!
//! Tables are read and written through their typed definitions in [`crate::tables`].

use anyhow::Context;
use candle_core::Device;

use crate::engine::stage::InputArtifact;
use crate::model::{Model, Weights};

pub mod answering;
pub mod grm;
pub mod irm;
pub mod judge;
pub mod resume;
pub mod train_data;
pub mod trained_consistency;
pub mod training;

/// Every stage runs on the CPU.
pub fn device() -> Device {
    Device::Cpu
}

/// Load the checkpoint of `input`.
pub fn load_model(input: &InputArtifact, weights: Weights) -> anyhow::Result<Model> {
    let dir = input
        .checkpoint
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{} has no checkpoint", input.task))?;
    Model::load(dir, weights, &device()).with_context(|| format!("loading {}", input.task))
}

/// Fail with a clear message when a training loss is not finite.
pub fn check_finite(what: &str, value: f64, step: u64) -> anyhow::Result<()> {
    if value.is_finite() {
        return Ok(());
    }
    Err(crate::user_err!(
        "{what} is {value} at step {step}: training diverged and nothing was committed; lower \
         the learning rate (or beta) and run again"
    )
    .into())
}
