//! The IRM/GRM consistency rate on the previous iteration's trained pairs
//! under the current model Mt: the drift of the two rewards on data they were
//! trained to agree on. Used by `consistency-filter@k`, k ≥ 2.
//!
//! The pairs are those of `filter_pairs` of `consistency-filter@k-1` with
//! `selected = true`, their responses those of `generate@k-1`. `p_irm` is
//! computed by [`irm::score`] with score-irm@k's β (read from its params) against
//! the filter's `irm_ref` slot (bound like score-irm's default); `p_grm` by
//! [`grm::judge_pairs`] with score-grm@k's own params (template, mode, swap, τ,
//! verdict/score strings), read from its input, so they cannot drift from score-grm.

use std::collections::BTreeSet;

use super::grm::{self, Responses, ScoreGrmParams};
use super::irm::{self, ScoreIrmParams};
use super::load_model;
use crate::engine::stage::{InputArtifact, TaskContext};
use crate::loss::select_pair;
use crate::model::{Model, Weights};
use crate::tables::filter_pairs::FilterPairRow;
use crate::tables::pairs::PairRow;
use crate::tables::responses;

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
    // Only the responses of the selected pairs are scored and judged (SRLM selects a few).
    let needed: BTreeSet<i64> = pairs
        .iter()
        .flat_map(|p| [p.response_id_1, p.response_id_2])
        .collect();
    let responses: Responses = responses::by_id(previous_generation)?
        .into_iter()
        .filter(|(id, _)| needed.contains(id))
        .collect();
    // Mt is loaded once and serves both the IRM and the GRM.
    let model = load_model(ctx.input("model")?, Weights::Frozen)?;
    let (p_irm, q) = preferences(ctx, &model, &responses, &pairs)?;
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

fn selected_pairs(previous: &InputArtifact) -> anyhow::Result<Vec<PairRow>> {
    Ok(previous
        .rows::<FilterPairRow>()?
        .into_iter()
        .filter(|r| r.selected)
        .map(|r| PairRow {
            pair_id: r.pair_id,
            prompt_id: r.prompt_id,
            response_id_1: r.response_id_1,
            response_id_2: r.response_id_2,
        })
        .collect())
}

/// Mt's IRM and GRM preferences for the first response of each pair (`p_irm`, `q`), with
/// the settings the iteration's score-irm and score-grm used.
fn preferences(
    ctx: &TaskContext,
    model: &Model,
    responses: &Responses,
    pairs: &[PairRow],
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let irm_settings: ScoreIrmParams = ctx.input("irm")?.params_as()?;
    let items = irm::items(responses);
    let batch = irm_settings.batch_size;
    let policy = irm::score_with(model, &items, batch)?;
    let (mt, irm_ref) = (ctx.input("model")?, ctx.input("irm_ref")?);
    let reference = irm::reference_scores(mt, irm_ref, &policy, &items, batch)?;
    let margin = irm::margins(irm_settings.norm, responses, &policy, &reference);
    let p_irm = pairs
        .iter()
        .map(|pair| Ok(irm::preference(irm_settings.beta, pair, &margin)?.1))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let grm_settings: ScoreGrmParams = ctx.input("grm")?.params_as()?;
    let template = grm::load_template(ctx, &grm_settings)?;
    let judged = grm::judge_pairs(model, &template, &grm_settings, responses, pairs)?;
    let q = judged.scores.into_iter().map(|s| s.p_grm).collect();
    Ok((p_irm, q))
}
