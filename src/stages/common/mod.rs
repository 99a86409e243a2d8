//! Helpers shared by the stages; no stage imports another stage, they share these.
//!
//! ```text
//! answering            answer conversations with a model (generate, answers, export)
//! cream                CREAM's two rankings of a prompt's responses (the filter's mode cream)
//! irm                  the implicit reward: log-probs, the IRM reference, score-irm's params
//! grm                  the model as a judge of pairs, score-grm's params
//! judge                judge templates and verdict/score tokens (grm, grm-winrate, train)
//! length_control       unfinished responses and Meta-Rewarding's ρ pair choice (the filter)
//! meta_judge           Meta-Rewarding's judge pairs: sampled judgments, meta-judged (score-grm)
//! train_data           train@k's training set, joined by pair_id from upstream tables
//! trained_consistency  the IRM/GRM agreement on the previous iteration's trained pairs
//! resume               resumable training (sft, train)
//! self_instruct        Self-Instruct-style JSONL tasks: prompts and demonstrations
//! sharding             a generation's prompts split into shards, and merged back (scorers)
//! training             the training-loop skeleton sft and train share
//! ```
//!
//! Tables are read and written through their typed definitions in [`crate::tables`].

use anyhow::Context;
use candle_core::Device;

use crate::engine::stage::InputArtifact;
use crate::model::{Model, Weights};

pub mod answering;
pub mod cream;
pub mod grm;
pub mod irm;
pub mod judge;
pub mod length_control;
pub mod meta_judge;
pub mod records;
pub mod resume;
pub mod self_instruct;
pub mod sharding;
pub mod train_data;
pub mod trained_consistency;
pub mod training;
pub mod trl;

/// Input slots several stages declare alike.
pub mod slots {
    use crate::engine::stage::Slot;

    /// Mt, the model iteration k starts from.
    pub const MT: Slot = Slot::checkpoint("model").by_default("model@k-1");
    /// Mk, the model iteration k trained (what eval measures).
    pub const MK: Slot = Slot::checkpoint("model").by_default("model@k");
    /// The judge (GRM) of iteration k: Mt unless the arm freezes it (`models.judge`).
    pub const JUDGE: Slot = Slot::checkpoint("model").by_default("model@judge");
    /// The IRM reference of the model chain.
    pub const IRM_REF: Slot = Slot::checkpoint("irm_ref").by_default("model@irm_ref");
    /// The model before SFT (eval's IRM reference).
    pub const INITIAL: Slot = Slot::checkpoint("reference").by_default("model@initial");
    /// generate@k's responses and pairs.
    pub const GENERATION: Slot = Slot::tables("generation").by_default("generate");
    /// score-irm@k's log-probs and preferences.
    pub const IRM: Slot = Slot::tables("irm").by_default("score-irm");
    /// score-grm@k's judgements.
    pub const GRM: Slot = Slot::tables("grm").by_default("score-grm");
}

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
