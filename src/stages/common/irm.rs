//! The implicit reward model: `log π(y|x)` of responses under a model, and score-irm's
//! params (which consistency-filter and train read from score-irm's input instead of
//! repeating them). The IRM reference is the model chain's `model@irm_ref`
//! ([`crate::engine::config::IrmReference`]), which every stage that needs it binds.
//!
//! `p_irm = σ(β·[(logπ_Mt(y1) − logπ_ref(y1)) − (logπ_Mt(y2) − logπ_ref(y2))])`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::load_model;
use crate::engine::stage::InputArtifact;
use crate::loss::bernoulli::sigmoid;
use crate::model::score::{Pair, response_logprobs_vec};
use crate::model::{Adapters, Model, Weights};
use crate::tables::pairs::PairRow;

/// Params of `score-irm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreIrmParams {
    /// β of the implicit reward (train@k uses it for p too).
    pub beta: f64,
    /// Responses scored per forward pass (speed only).
    pub batch_size: usize,
}

impl Default for ScoreIrmParams {
    fn default() -> Self {
        ScoreIrmParams {
            beta: 0.1,
            batch_size: 64,
        }
    }
}

/// `log π(response | prompt)` per item under the checkpoint of `input`.
pub fn score(input: &InputArtifact, items: &[Pair], batch: usize) -> anyhow::Result<Vec<f64>> {
    score_with(&load_model(input, Weights::Frozen)?, items, batch)
}

/// `log π_ref(response | prompt)` per item under the checkpoint bound to `irm_ref`; when
/// that is the policy's own checkpoint (`model`), `policy`'s scores themselves (p = ½).
pub fn reference_scores(
    model: &InputArtifact,
    irm_ref: &InputArtifact,
    policy: &[f64],
    items: &[Pair],
    batch: usize,
) -> anyhow::Result<Vec<f64>> {
    if model.checkpoint == irm_ref.checkpoint {
        return Ok(policy.to_vec());
    }
    score(irm_ref, items, batch)
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

/// `(β·Δ, p_irm = σ(β·Δ))` of `pair` from its responses' `logπ_Mt − logπ_ref` margins.
pub fn preference(
    beta: f64,
    pair: &PairRow,
    margins: &BTreeMap<i64, f64>,
) -> anyhow::Result<(f64, f64)> {
    let margin = |r: i64| {
        margins.get(&r).copied().ok_or_else(|| {
            anyhow::anyhow!(
                "pair {} names response {r}, which does not exist",
                pair.pair_id
            )
        })
    };
    let z = beta * (margin(pair.response_id_1)? - margin(pair.response_id_2)?);
    Ok((z, sigmoid(z)))
}
