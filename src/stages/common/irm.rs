//! The implicit reward model: `log π(y|x)` of responses under a model, the IRM reference a
//! pipeline measures against, and score-irm's params (which consistency-filter and train
//! read from score-irm's input instead of repeating them).
//!
//! `p_irm = σ(β·[(logπ_Mt(y1) − logπ_ref(y1)) − (logπ_Mt(y2) − logπ_ref(y2))])`.

use serde::{Deserialize, Serialize};

use super::load_model;
use crate::engine::stage::InputArtifact;
use crate::loss::bernoulli::sigmoid;
use crate::model::score::{Pair, response_logprobs_vec};
use crate::model::{Adapters, Model, Weights};

/// Which model the implicit reward is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IrmReference {
    /// The model before SFT, fixed for all iterations (the stable choice).
    Initial,
    /// The model Mt was trained against (M_{t−1}).
    PreviousIteration,
    /// Mt itself (p = ½ at the start of training).
    IterationStart,
}

impl IrmReference {
    /// The default binding of the `irm_ref` slot.
    pub fn binding(self) -> &'static str {
        match self {
            IrmReference::Initial => "model@initial",
            IrmReference::PreviousIteration => "model@k-2",
            IrmReference::IterationStart => "model@k-1",
        }
    }

    /// The name as written in a pipeline file.
    pub fn name(self) -> &'static str {
        match self {
            IrmReference::Initial => "initial",
            IrmReference::PreviousIteration => "previous_iteration",
            IrmReference::IterationStart => "iteration_start",
        }
    }
}

/// Params of `score-irm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreIrmParams {
    /// β of the implicit reward (train@k uses it for p too).
    pub beta: f64,
    /// Default binding of the `irm_ref` slot.
    pub irm_reference: IrmReference,
    /// Responses scored per forward pass (speed only).
    pub batch_size: usize,
}

impl Default for ScoreIrmParams {
    fn default() -> Self {
        ScoreIrmParams {
            beta: 0.1,
            irm_reference: IrmReference::Initial,
            batch_size: 64,
        }
    }
}

/// `log π(response | prompt)` per item under the checkpoint of `input`.
pub fn score(input: &InputArtifact, items: &[Pair], batch: usize) -> anyhow::Result<Vec<f64>> {
    score_with(&load_model(input, Weights::Frozen)?, items, batch)
}

/// [`score`] with a model already loaded.
pub fn score_with(model: &Model, items: &[Pair], batch: usize) -> anyhow::Result<Vec<f64>> {
    let v = response_logprobs_vec(
        &model.decoder,
        items,
        model.text.pad_id(),
        Adapters::On,
        batch,
    )?;
    Ok(v.into_iter().map(f64::from).collect())
}

/// `(β·Δ, σ(β·Δ))` of a pair from its responses' `logπ_Mt − logπ_ref` margins.
pub fn preference(beta: f64, margin_1: f64, margin_2: f64) -> (f64, f64) {
    let z = beta * (margin_1 - margin_2);
    (z, sigmoid(z))
}
