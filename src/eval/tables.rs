//! The eval stages' tables as eval writes them (their typed definitions are in
//! [`crate::tables::eval`]) and the held-out world tables eval reads
//! ([`crate::tables::world`]).

use std::path::Path;

use arrow::record_batch::RecordBatch;

use super::evaluate::{EvalOutput, GoldPair};
use super::metrics::Mean;
use crate::table::Table;
use crate::tables::eval::{EvalLabelRow, EvalMetricRow, EvalPairRow, EvalResponseRow};
use crate::tables::world::{EvalPromptRow, GoldPairRow};

/// The metrics table.
pub const EVAL: &str = EvalMetricRow::NAME;
/// The metrics of the iteration's own pairs ([`super::labels`]); same columns as `eval`.
pub const EVAL_LABELS: &str = EvalLabelRow::NAME;

/// The `eval_labels` rows of metrics `m`.
pub fn label_rows(m: &[(String, Mean)]) -> Vec<EvalLabelRow> {
    m.iter()
        .map(|(metric, mean)| EvalLabelRow {
            metric: metric.clone(),
            value: mean.value,
            n: mean.n as i64,
        })
        .collect()
}

/// The three tables of one eval task at iteration `k`.
pub fn batches(k: u32, out: &EvalOutput) -> anyhow::Result<Vec<(String, RecordBatch)>> {
    let metrics = out
        .metrics
        .iter()
        .map(|(metric, mean)| EvalMetricRow {
            metric: metric.clone(),
            value: mean.value,
            n: mean.n as i64,
        })
        .collect();
    let responses = out
        .responses
        .iter()
        .map(|(d, x)| EvalResponseRow {
            prompt_id: x.prompt_id,
            decoding: d.name().to_string(),
            sample: x.sample as i32,
            response: x.text.clone(),
            length: x.length as i32,
            finished: x.finished,
            gold: x.gold,
            exact: x.gold >= 1.0,
        })
        .collect();
    let pairs = out
        .pairs
        .iter()
        .map(|x| EvalPairRow {
            pair_id: x.id,
            a_better: x.a_better,
            p_irm: x.p_irm,
            p_a_ab: x.p_a_ab,
            p_a_ba: x.p_a_ba,
            q_pairwise: x.q_pairwise,
            score_a: x.score_a,
            score_b: x.score_b,
            q_pointwise: x.q_pointwise,
        })
        .collect();
    Ok(vec![
        (EVAL.into(), EvalMetricRow::batch(k, metrics)?),
        (
            EvalResponseRow::NAME.into(),
            EvalResponseRow::batch(k, responses)?,
        ),
        (EvalPairRow::NAME.into(), EvalPairRow::batch(k, pairs)?),
    ])
}

/// `(id, prompt)` of the world's `eval_prompts` table.
pub fn read_prompts(path: &Path) -> anyhow::Result<Vec<(i64, String)>> {
    Ok(EvalPromptRow::read_path(path)?
        .into_iter()
        .map(|r| (r.id, r.prompt))
        .collect())
}

/// The world's `gold_pairs` table.
pub fn read_gold_pairs(path: &Path) -> anyhow::Result<Vec<GoldPair>> {
    Ok(GoldPairRow::read_path(path)?
        .into_iter()
        .map(|r| GoldPair {
            id: r.id,
            a_better: r.label == crate::world::format::VERDICT_A,
            prompt: r.prompt,
            a: r.response_a,
            b: r.response_b,
        })
        .collect())
}
