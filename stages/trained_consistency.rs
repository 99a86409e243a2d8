//! The IRM/GRM consistency rate on the previous iteration's trained pairs
//! under the current model Mt (DESIGN: the drift of the two rewards on data
//! they were trained to agree on). Used by `consistency-filter@k`, k ≥ 2.
//!
//! The pairs are those of `filter_pairs` of `consistency-filter@k-1` with
//! `selected = true`, their responses those of `generate@k-1`. `p_irm` is
//! computed by [`super::score_irm::score`] with β read from this iteration's
//! `irm_pairs` (and the filter's `irm_ref` slot, bound like score-irm's
//! default); `p_grm` by [`super::score_grm::pairwise`]/`pointwise` with
//! score-grm@k's own params (template, mode, swap, τ, verdict/score strings),
//! read from its input, so they cannot drift from score-grm.

use std::collections::{BTreeMap, BTreeSet};

use super::common;
use super::score_grm::{self, GrmMode, ScoreCols, ScoreGrmParams};
use crate::loss::bernoulli::sigmoid;
use crate::loss::select_pair;
use crate::model::score::Pair;
use crate::model::{Model, Weights};
use crate::stage::{InputArtifact, TaskContext};

/// The pairs compared and the fraction of them with `(p−½)(q−½) > 0`.
pub struct TrainedConsistency {
    pub pairs: i64,
    pub rate: Option<f64>,
}

/// Scores the previous iteration's selected pairs under `model`.
pub fn measure(
    ctx: &TaskContext,
    previous: &InputArtifact,
    previous_generation: &InputArtifact,
) -> anyhow::Result<TrainedConsistency> {
    let pairs = selected_pairs(previous)?;
    if pairs.is_empty() {
        return Ok(TrainedConsistency {
            pairs: 0,
            rate: None,
        });
    }
    let responses = common::read_responses(previous_generation)?;
    // Mt is loaded once and serves both the IRM and the GRM.
    let model = common::load_model(ctx.input("model")?, Weights::Frozen)?;
    let p_irm = irm_probs(ctx, &model, &responses, &pairs)?;
    let q = grm_probs(ctx, &model, &responses, &pairs)?;
    let agree = p_irm
        .iter()
        .zip(&q)
        .filter(|(p, q)| select_pair(**p, **q, 0.0).is_some())
        .count();
    Ok(TrainedConsistency {
        pairs: pairs.len() as i64,
        rate: Some(agree as f64 / pairs.len() as f64),
    })
}

fn selected_pairs(previous: &InputArtifact) -> anyhow::Result<Vec<common::PairRow>> {
    let b = common::read_table(previous, super::consistency_filter::FILTER_PAIRS)?;
    let cols = [
        common::col_i64(&b, "pair_id")?,
        common::col_i64(&b, "prompt_id")?,
        common::col_i64(&b, "response_id_1")?,
        common::col_i64(&b, "response_id_2")?,
    ];
    let selected = b
        .column_by_name("selected")
        .and_then(|c| c.as_any().downcast_ref::<arrow::array::BooleanArray>())
        .ok_or_else(|| anyhow::anyhow!("filter_pairs has no Boolean column `selected`"))?;
    Ok((0..b.num_rows())
        .filter(|&i| selected.value(i))
        .map(|i| (cols[0][i], cols[1][i], cols[2][i], cols[3][i]))
        .collect())
}

fn irm_probs(
    ctx: &TaskContext,
    model: &Model,
    responses: &score_grm::Responses,
    pairs: &[common::PairRow],
) -> anyhow::Result<Vec<f64>> {
    let irm = common::read_table(ctx.input("irm")?, super::score_irm::IRM_PAIRS)?;
    let beta = common::col_f64(&irm, "beta")?
        .into_iter()
        .flatten()
        .next()
        .unwrap_or(super::score_irm::ScoreIrmParams::default().beta);
    // Only the responses of the selected pairs are scored (SRLM selects a few).
    let ids: BTreeSet<i64> = pairs.iter().flat_map(|&(_, _, r1, r2)| [r1, r2]).collect();
    let items: Vec<Pair> = ids
        .iter()
        .filter_map(|id| responses.get(id))
        .map(|r| Pair {
            prompt: r.prompt_ids.clone(),
            response: r.token_ids.clone(),
        })
        .collect();
    let batch = super::score_irm::ScoreIrmParams::default().batch_size;
    let policy = super::score_irm::score_with(model, &items, batch)?;
    let reference = if ctx.input("model")?.checkpoint == ctx.input("irm_ref")?.checkpoint {
        policy.clone()
    } else {
        super::score_irm::score(ctx.input("irm_ref")?, &items, batch)?
    };
    let margin: BTreeMap<i64, f64> = ids
        .iter()
        .filter(|id| responses.contains_key(id))
        .zip(policy.iter().zip(&reference))
        .map(|(&id, (a, b))| (id, a - b))
        .collect();
    pairs
        .iter()
        .map(|&(pair, _, r1, r2)| {
            let get = |r: i64| {
                margin.get(&r).copied().ok_or_else(|| {
                    anyhow::anyhow!("pair {pair} names response {r}, which does not exist")
                })
            };
            Ok(sigmoid(beta * (get(r1)? - get(r2)?)))
        })
        .collect()
}

/// The judge settings score-grm@k ran with: its own params (template, mode, verdicts or
/// score strings, swap, τ), so they cannot drift from score-grm.
fn judge_params(ctx: &TaskContext) -> anyhow::Result<ScoreGrmParams> {
    let grm = ctx.input("grm")?;
    serde_json::from_value(grm.params.clone()).map_err(|e| {
        crate::internal_err!("{} ran with params this version cannot read: {e}", grm.task).into()
    })
}

fn grm_probs(
    ctx: &TaskContext,
    model: &Model,
    responses: &score_grm::Responses,
    pairs: &[common::PairRow],
) -> anyhow::Result<Vec<f64>> {
    let p = judge_params(ctx)?;
    let template = score_grm::load_template(ctx, &p)?;
    let mut cols = ScoreCols::default();
    match p.mode {
        GrmMode::Pairwise => {
            score_grm::pairwise(model, &template, &p, responses, pairs, &mut cols)?
        }
        GrmMode::Pointwise => {
            score_grm::pointwise(model, &template, &p, responses, pairs, &mut cols)?
        }
    };
    Ok(cols.p_grm)
}
