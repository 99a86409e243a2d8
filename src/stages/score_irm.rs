//! `score-irm@k`: the implicit reward model ([`irm`]). Log-probs of every response
//! under Mt and under the IRM reference, and `p_irm` per pair.
//!
//! The Mt log-probs are also the DPO reference log-probs of `train@k`, which
//! never recomputes them. The `irm_ref` slot binds `model@irm_ref`: the model chain's
//! `irm_reference` (`initial` | `previous_iteration` | `iteration_start`, default
//! `initial`, per arm) makes it `model@initial`, `model@k-2` or `model@k-1`. When the
//! reference is Mt itself its log-probs are copied, not recomputed (p = ½).
//! `norm: mean` compares per-token log-ratios ([`irm`]).
//! `logπ(y|x)` sums the response tokens' log-probs (the stored ids: EOS
//! included when generated) given the stored prompt ids.
//!
//! Writes [`response_logps`](crate::tables::response_logps) and
//! [`irm_pairs`](crate::tables::irm_pairs).

use std::collections::BTreeMap;

use super::common::irm::{self, ScoreIrmParams};
use super::common::{sharding, slots};
use crate::engine::stage::{DeclaredTable, ParamError, Slot, Stage, TaskContext};
use crate::table::Table;
use crate::tables::irm_pairs::IrmPairRow;
use crate::tables::pairs::PairRow;
use crate::tables::response_logps::ResponseLogpRow;
use crate::tables::responses;

/// The `score-irm` stage.
pub struct ScoreIrm;

impl Stage for ScoreIrm {
    type Params = ScoreIrmParams;
    /// Bump when the output changes for the same inputs and params.
    const VERSION: u32 = 3;
    const INPUTS: &'static [Slot] = &[slots::MT, slots::IRM_REF, slots::GENERATION];
    const TABLES: &'static [DeclaredTable] = &[ResponseLogpRow::declared, IrmPairRow::declared];
    /// A shard scores a slice of the prompts' responses and pairs (per-sequence log-probs).
    const SHARDABLE: bool = true;

    fn validate(&self, p: &ScoreIrmParams) -> Result<(), ParamError> {
        if !(p.beta.is_finite() && p.beta > 0.0) {
            return Err(ParamError::at(
                "beta",
                format!("must be a positive number, got {}", p.beta),
            ));
        }
        Ok(())
    }
    fn run(&self, p: &ScoreIrmParams, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let generation = ctx.input("generation")?;
        let mut responses = responses::by_id(generation)?;
        let mut pairs: Vec<PairRow> = generation.rows()?;
        sharding::keep_shard(ctx, &mut responses, &mut pairs);
        let items = irm::items(&responses);
        let (model, irm_ref) = (ctx.input("model")?, ctx.input("irm_ref")?);
        let policy = irm::score(model, &items, p.batch_size)?;
        let reference = irm::reference_scores(model, irm_ref, &policy, &items, p.batch_size)?;
        let logps: Vec<ResponseLogpRow> = responses
            .values()
            .zip(policy.iter().zip(&reference))
            .map(|(r, (&policy, &reference))| ResponseLogpRow {
                response_id: r.response_id,
                logp_policy: policy,
                logp_irm_ref: reference,
                length: r.token_ids.len() as i32,
            })
            .collect();
        let margins = irm::margins(p.norm, &responses, &policy, &reference);
        let irm_pairs = pair_rows(&pairs, &margins, p.beta)?;
        ctx.write_rows(logps)?;
        ctx.write_rows(irm_pairs)
    }
    /// Log-probs in response id order, pairs in the generation's order.
    fn merge(&self, _p: &ScoreIrmParams, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let generation = ctx.input("generation")?;
        let response_ids: Vec<i64> = responses::by_id(generation)?.into_keys().collect();
        let pair_ids = sharding::pair_order(ctx)?;
        let logps = sharding::merged(ctx, |r: &ResponseLogpRow| r.response_id, &response_ids)?;
        let irm_pairs = sharding::merged(ctx, |r: &IrmPairRow| r.pair_id, &pair_ids)?;
        ctx.write_rows(logps)?;
        ctx.write_rows(irm_pairs)
    }
}

/// The IRM preference of every pair from its responses' `logπ_Mt − logπ_ref` margins.
fn pair_rows(
    pairs: &[PairRow],
    margins: &BTreeMap<i64, f64>,
    beta: f64,
) -> anyhow::Result<Vec<IrmPairRow>> {
    pairs
        .iter()
        .map(|pair| {
            let (irm_logit, p_irm) = irm::preference(beta, pair, margins)?;
            Ok(IrmPairRow {
                pair_id: pair.pair_id,
                prompt_id: pair.prompt_id,
                response_id_1: pair.response_id_1,
                response_id_2: pair.response_id_2,
                beta,
                irm_logit,
                p_irm,
            })
        })
        .collect()
}
