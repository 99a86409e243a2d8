//! The implicit reward model: `log π(y|x)` of responses under a model, and score-irm's
//! params (which consistency-filter and train read from score-irm's input instead of
//! repeating them). The IRM reference is the model chain's `model@irm_ref`
//! ([`crate::engine::config::IrmReference`]), which every stage that needs it binds.
//!
//! `p_irm = σ(β·[m(y1) − m(y2)])` with the margin `m(y) = logπ_Mt(y) − logπ_ref(y)`
//! (`norm: sum`, the default) or that divided by `|y|`, the response's tokens (`norm: mean`:
//! the mean per-token log-ratio, as length-normalised DPO in Tülu 3 and SimPO's reward; an
//! implicit reward summed against a reference that knows the task far less grows with
//! every token, i.e. it counts length).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::load_model;
use crate::engine::stage::InputArtifact;
use crate::loss::bernoulli::sigmoid;
use crate::model::score::{Pair, response_logprobs_vec};
use crate::model::{Adapters, Model, Weights};
use crate::tables::pairs::PairRow;
use crate::tables::responses::ResponseRow;

/// Params of `score-irm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreIrmParams {
    /// β of the implicit reward (train@k uses it for p too).
    pub beta: f64,
    /// `sum` or `mean` (per token) log-ratios (train@k uses it for p too).
    pub norm: IrmNorm,
    /// Responses scored per forward pass (speed only).
    pub batch_size: usize,
}

impl Default for ScoreIrmParams {
    fn default() -> Self {
        ScoreIrmParams {
            beta: 0.1,
            norm: IrmNorm::Sum,
            batch_size: 64,
        }
    }
}

/// How the IRM aggregates a response's per-token log-ratios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IrmNorm {
    /// `logπ_Mt(y) − logπ_ref(y)` (the DPO implicit reward).
    #[default]
    Sum,
    /// That divided by the response's length in tokens.
    Mean,
}

/// The IRM margin of one response: its log-ratio, per token under [`IrmNorm::Mean`]
/// (`length` ≥ 1 there; an empty response's margin is its sum).
pub fn margin(norm: IrmNorm, policy: f64, reference: f64, length: usize) -> f64 {
    match norm {
        IrmNorm::Sum => policy - reference,
        IrmNorm::Mean => (policy - reference) / length.max(1) as f64,
    }
}

/// The (prompt, response) token ids of every response, in response-id order: what
/// [`score`] and [`reference_scores`] take.
pub fn items(responses: &BTreeMap<i64, ResponseRow>) -> Vec<Pair> {
    responses
        .values()
        .map(|r| Pair {
            prompt: r.prompt_ids.clone(),
            response: r.token_ids.clone(),
        })
        .collect()
}

/// Every response's [`margin`] from its policy and reference log-probs (in response-id
/// order, as [`items`]).
pub fn margins(
    norm: IrmNorm,
    responses: &BTreeMap<i64, ResponseRow>,
    policy: &[f64],
    reference: &[f64],
) -> BTreeMap<i64, f64> {
    responses
        .iter()
        .zip(policy.iter().zip(reference))
        .map(|((&id, r), (&a, &b))| (id, margin(norm, a, b, r.token_ids.len())))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed: y1 has 2 tokens and log-ratio −1 (−0.5 per token), y2 has 4 tokens and
    /// log-ratio −1.6 (−0.4 per token). Summed, y1 wins: σ(0.1·0.6) = 0.514995; per token,
    /// y2 wins: σ(0.1·(−0.1)) = 0.497500.
    #[test]
    fn mean_norm_compares_per_token_log_ratios() {
        let pair = PairRow {
            pair_id: 0,
            prompt_id: 0,
            response_id_1: 1,
            response_id_2: 2,
        };
        for (norm, want) in [(IrmNorm::Sum, 0.514_995), (IrmNorm::Mean, 0.497_500)] {
            let margins = BTreeMap::from([
                (1, margin(norm, -3.0, -2.0, 2)),
                (2, margin(norm, -5.0, -3.4, 4)),
            ]);
            let (_, p) = preference(0.1, &pair, &margins).unwrap();
            assert!((p - want).abs() < 1e-6, "{norm:?}: p {p}, want {want}");
        }
    }
}
