//! The training set of `train@k`, assembled by `pair_id` from the upstream
//! tables: token ids from `generate` (responses) and `score-grm` (judge
//! prompts, verdict/score tokens), cached log-probs from `score-irm`, labels
//! and selection from `consistency-filter`. Nothing is re-tokenised.

use std::collections::BTreeMap;

use super::common;
use super::score_grm::{GRM_SCORES, JUDGE_TOKENS};
use super::score_irm::{IRM_PAIRS, RESPONSE_LOGPS};
use crate::stage::TaskContext;

/// The stored judge prompts of one pair (the second is absent without swap).
type JudgeIds = (Option<Vec<u32>>, Option<Vec<u32>>);

/// One training pair.
#[derive(Debug, Clone)]
pub struct TrainPair {
    pub pair_id: i64,
    pub prompt: Vec<u32>,
    pub y1: Vec<u32>,
    pub y2: Vec<u32>,
    /// `logπ_Mt(y)`: the DPO reference.
    pub dpo_ref: [f64; 2],
    /// `logπ_irm_ref(y)`.
    pub irm_ref: [f64; 2],
    /// Judge prompts (pairwise: orders (y1,y2) and (y2,y1); pointwise: y1, y2).
    pub judge_1: Vec<u32>,
    pub judge_2: Option<Vec<u32>>,
    /// The fixed label (`Some(true)`: y1 preferred), when the filter gave one.
    pub y1_preferred: Option<bool>,
}

/// The GRM's token side.
#[derive(Debug, Clone)]
pub struct JudgeSpec {
    pub pointwise: bool,
    pub token_ids: Vec<u32>,
    pub values: Vec<f64>,
    pub tau: f64,
}

/// Everything `train` reads.
pub struct TrainData {
    pub pairs: Vec<TrainPair>,
    pub judge: JudgeSpec,
    /// β of the implicit reward (score-irm's).
    pub irm_beta: f64,
}

/// Read and join the inputs of `ctx` (selected pairs only, in pair-id order).
pub fn load(ctx: &TaskContext) -> anyhow::Result<TrainData> {
    let responses = common::read_responses(ctx.input("generation")?)?;
    let irm = ctx.input("irm")?;
    let logps = common::read_table(irm, RESPONSE_LOGPS)?;
    let lp: BTreeMap<i64, (f64, f64)> = common::col_i64(&logps, "response_id")?
        .into_iter()
        .zip(common::col_f64(&logps, "logp_policy")?)
        .zip(common::col_f64(&logps, "logp_irm_ref")?)
        .map(|((id, a), b)| (id, (a.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN))))
        .collect();
    let irm_pairs = common::read_table(irm, IRM_PAIRS)?;
    let irm_beta = common::col_f64(&irm_pairs, "beta")?
        .first()
        .copied()
        .flatten()
        .unwrap_or(0.1);
    let grm_in = ctx.input("grm")?;
    let grm = common::read_table(grm_in, GRM_SCORES)?;
    let judge_ids: BTreeMap<i64, JudgeIds> = common::col_i64(&grm, "pair_id")?
        .into_iter()
        .zip(common::col_ids(&grm, "judge_ids_1")?)
        .zip(common::col_ids(&grm, "judge_ids_2")?)
        .map(|((id, a), b)| (id, (a, b)))
        .collect();
    let judge = judge_spec(grm_in, &grm)?;
    let filt = common::read_table(
        ctx.input("filter")?,
        super::consistency_filter::FILTER_PAIRS,
    )?;
    let ids = common::col_i64(&filt, "pair_id")?;
    let r1 = common::col_i64(&filt, "response_id_1")?;
    let r2 = common::col_i64(&filt, "response_id_2")?;
    let labels = common::col_str(&filt, "label")?;
    let selected = common::col_bool(&filt, "selected")?;
    let mut pairs = Vec::new();
    for i in 0..ids.len() {
        if selected[i] != Some(true) {
            continue;
        }
        let pid = ids[i];
        let (a, b) = (
            common::response(&responses, r1[i], pid)?,
            common::response(&responses, r2[i], pid)?,
        );
        let missing = || anyhow::anyhow!("pair {pid} has no log-probs or judge prompts upstream");
        let (la, lb) = (
            lp.get(&r1[i]).ok_or_else(missing)?,
            lp.get(&r2[i]).ok_or_else(missing)?,
        );
        let (j1, j2) = judge_ids.get(&pid).ok_or_else(missing)?;
        pairs.push(TrainPair {
            pair_id: pid,
            prompt: a.prompt_ids.clone(),
            y1: a.token_ids.clone(),
            y2: b.token_ids.clone(),
            dpo_ref: [la.0, lb.0],
            irm_ref: [la.1, lb.1],
            judge_1: j1.clone().ok_or_else(missing)?,
            judge_2: j2.clone(),
            y1_preferred: labels[i].as_deref().map(|l| l == "y1"),
        });
    }
    pairs.sort_by_key(|p| p.pair_id);
    Ok(TrainData {
        pairs,
        judge,
        irm_beta,
    })
}

fn judge_spec(
    grm_in: &crate::stage::InputArtifact,
    grm: &arrow::record_batch::RecordBatch,
) -> anyhow::Result<JudgeSpec> {
    let tokens = common::read_table(grm_in, JUDGE_TOKENS)?;
    let mode = common::col_str(&tokens, "mode")?;
    let pointwise = mode.first().cloned().flatten().as_deref() == Some("pointwise");
    let token_ids = common::col_i32(&tokens, "token_id")?
        .into_iter()
        .map(|x| x as u32)
        .collect();
    let values = common::col_f64(&tokens, "value")?
        .into_iter()
        .map(|v| v.unwrap_or(0.0))
        .collect();
    let tau = common::col_f64(grm, "tau")?
        .into_iter()
        .flatten()
        .next()
        .unwrap_or(1.0);
    Ok(JudgeSpec {
        pointwise,
        token_ids,
        values,
        tau,
    })
}
