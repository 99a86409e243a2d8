//! CREAM's rankings (the filter's `mode: cream`; [`crate::loss::cream`] for the formulas).
//!
//! Mt's ranking of a prompt's responses is score-irm's implicit reward (its margin
//! `logπ_Mt − logπ_ref`, per token under `norm: mean`). The previous model's ranking is
//! its implicit reward against the filter's `previous_ref` slot: by default Mt−1
//! (`model@k-2`) against the same reference (`model@irm_ref`), as CREAM's code measures
//! both models against the base model. Where the two slots name the same checkpoint —
//! with the default reference `model@initial`, at k = 1 the previous model *is*
//! `model@initial` — the previous ranking is that model's length-normalised
//! log-likelihood `logπ(y)/|y|`, CREAM's rule for the first iteration. (Binding
//! `previous_ref: model@k-3` with `irm_reference: previous_iteration` measures each model
//! against the one it was trained from instead.) Log-probs under Mt or the IRM reference
//! are score-irm's, reused, not recomputed.
//!
//! Mt's own ranking falls back the same way when Mt is its IRM reference (a chain that
//! starts at an instruct model, `model@initial` = M0, at k = 1).
//!
//! Responses with the same tokens are the same response to a ranking: they get one reward
//! (the first by response id), so they are tied in both rankings, exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::irm::{self, IrmNorm, ScoreIrmParams};
use crate::engine::stage::{InputArtifact, TaskContext};
use crate::loss::cream::{consistency_rate, kendall_tau_b};
use crate::model::score::Pair;
use crate::tables::cream::{CreamPromptRow, CreamRewardRow};
use crate::tables::response_logps::ResponseLogpRow;
use crate::tables::responses::ResponseRow;

/// How the filter turns the prompts' τ into each pair's `C`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreamRate {
    /// One `C` for every pair: `(τ + 1)/2` averaged over the prompts (CREAM's main
    /// method, its code's `consistency_avg`).
    #[default]
    Average,
    /// Each pair its own prompt's `(τ + 1)/2` (its code's `consistency_dyn`).
    PerPrompt,
}

/// The filter's slots for the previous ranking.
pub const PREVIOUS_MODEL: &str = "previous_model";
pub const PREVIOUS_REF: &str = "previous_ref";

/// What the rankings decided: the tables, and per prompt the pair `(chosen, rejected)`.
pub struct CreamRanking {
    pub rewards: Vec<CreamRewardRow>,
    pub prompts: Vec<CreamPromptRow>,
    pub pairs: BTreeMap<i64, (i64, i64)>,
}

/// Rank every prompt's responses by Mt and by the previous model and compare.
pub fn rank(
    ctx: &TaskContext,
    rate: CreamRate,
    generated: &BTreeMap<i64, ResponseRow>,
) -> anyhow::Result<CreamRanking> {
    let irm = ctx.input("irm")?;
    let settings: ScoreIrmParams = irm.params_as()?;
    let logps: Vec<ResponseLogpRow> = irm.rows()?;
    // Mt against itself (a chain whose reference is M0, at k = 1) ranks nothing: like the
    // previous model without one, it ranks by its length-normalised log-likelihood.
    let own = ctx.input("model")?.checkpoint == ctx.input("irm_ref")?.checkpoint;
    let current: Vec<f64> = logps
        .iter()
        .map(|r| {
            let n = r.length as usize;
            match own {
                true => likelihood(r.logp_policy, n),
                false => irm::margin(settings.norm, r.logp_policy, r.logp_irm_ref, n),
            }
        })
        .collect();
    let ids: Vec<i64> = logps.iter().map(|r| r.response_id).collect();
    if ids != generated.keys().copied().collect::<Vec<_>>() {
        anyhow::bail!(
            "{}: score-irm's log-probs and generate's responses name different responses",
            ctx.task
        );
    }
    let previous = previous_rewards(ctx, &settings, generated, &logps)?;
    let current = same_tokens_same_reward(generated, &current);
    let previous = same_tokens_same_reward(generated, &previous);
    let rewards: Vec<CreamRewardRow> = generated
        .values()
        .zip(current.iter().zip(&previous))
        .map(|(r, (&reward, &previous_reward))| CreamRewardRow {
            response_id: r.response_id,
            prompt_id: r.prompt_id,
            reward,
            previous_reward,
        })
        .collect();
    let (prompts, pairs) = compare(&rewards, rate);
    Ok(CreamRanking {
        rewards,
        prompts,
        pairs,
    })
}

/// The previous model's reward of every response (response-id order).
fn previous_rewards(
    ctx: &TaskContext,
    settings: &ScoreIrmParams,
    generated: &BTreeMap<i64, ResponseRow>,
    logps: &[ResponseLogpRow],
) -> anyhow::Result<Vec<f64>> {
    let (model, reference) = (ctx.input(PREVIOUS_MODEL)?, ctx.input(PREVIOUS_REF)?);
    let items = irm::items(generated);
    let policy = log_probs(ctx, model, logps, &items, settings.batch_size)?;
    let lengths = logps.iter().map(|r| r.length as usize);
    if model.checkpoint == reference.checkpoint {
        return Ok(policy
            .iter()
            .zip(lengths)
            .map(|(&a, n)| likelihood(a, n))
            .collect());
    }
    let reference = log_probs(ctx, reference, logps, &items, settings.batch_size)?;
    Ok(policy
        .iter()
        .zip(&reference)
        .zip(lengths)
        .map(|((&a, &b), n)| irm::margin(settings.norm, a, b, n))
        .collect())
}

/// `logπ(y)` of every response under `input`: score-irm's numbers when it is Mt or the IRM
/// reference, else scored here.
fn log_probs(
    ctx: &TaskContext,
    input: &InputArtifact,
    logps: &[ResponseLogpRow],
    items: &[Pair],
    batch: usize,
) -> anyhow::Result<Vec<f64>> {
    if input.checkpoint == ctx.input("model")?.checkpoint {
        return Ok(logps.iter().map(|r| r.logp_policy).collect());
    }
    if input.checkpoint == ctx.input("irm_ref")?.checkpoint {
        return Ok(logps.iter().map(|r| r.logp_irm_ref).collect());
    }
    irm::score(input, items, batch)
}

/// `logπ(y)/|y|`: how a model with no reference ranks responses.
fn likelihood(logp: f64, length: usize) -> f64 {
    irm::margin(IrmNorm::Mean, logp, 0.0, length)
}

/// `rewards` (response-id order) with every response of a prompt that repeats an earlier
/// one's tokens given that one's reward.
fn same_tokens_same_reward(generated: &BTreeMap<i64, ResponseRow>, rewards: &[f64]) -> Vec<f64> {
    let mut first: BTreeMap<(i64, &[u32]), f64> = BTreeMap::new();
    generated
        .values()
        .zip(rewards)
        .map(|(r, &x)| *first.entry((r.prompt_id, &r.token_ids)).or_insert(x))
        .collect()
}

/// Per prompt: τ_b of the two rankings, `C`, and Mt's best and worst response.
fn compare(
    rewards: &[CreamRewardRow],
    rate: CreamRate,
) -> (Vec<CreamPromptRow>, BTreeMap<i64, (i64, i64)>) {
    let mut by_prompt: BTreeMap<i64, Vec<&CreamRewardRow>> = BTreeMap::new();
    for r in rewards {
        by_prompt.entry(r.prompt_id).or_default().push(r);
    }
    let mut prompts: Vec<CreamPromptRow> = by_prompt
        .iter()
        .map(|(&prompt_id, rows)| prompt_row(prompt_id, rows))
        .collect();
    let taus: Vec<f64> = prompts.iter().filter_map(|p| p.tau).collect();
    let average = match taus.len() {
        0 => 0.5,
        n => taus.iter().map(|&t| consistency_rate(t)).sum::<f64>() / n as f64,
    };
    for p in &mut prompts {
        p.consistency = match (rate, p.tau) {
            (CreamRate::Average, _) | (CreamRate::PerPrompt, None) => average,
            (CreamRate::PerPrompt, Some(tau)) => consistency_rate(tau),
        };
    }
    let pairs = prompts
        .iter()
        .filter_map(|p| Some((p.prompt_id, (p.chosen?, p.rejected?))))
        .collect();
    (prompts, pairs)
}

/// One prompt's comparison (`consistency` is filled in by [`compare`]).
fn prompt_row(prompt_id: i64, rows: &[&CreamRewardRow]) -> CreamPromptRow {
    let current: Vec<f64> = rows.iter().map(|r| r.reward).collect();
    let previous: Vec<f64> = rows.iter().map(|r| r.previous_reward).collect();
    let best = rows.iter().max_by(|a, b| {
        a.reward
            .total_cmp(&b.reward)
            .then(b.response_id.cmp(&a.response_id))
    });
    let worst = rows.iter().min_by(|a, b| {
        a.reward
            .total_cmp(&b.reward)
            .then(a.response_id.cmp(&b.response_id))
    });
    let pair = match (best, worst) {
        (Some(b), Some(w)) if b.reward > w.reward => Some((b.response_id, w.response_id)),
        _ => None,
    };
    CreamPromptRow {
        prompt_id,
        responses: rows.len() as i32,
        tau: kendall_tau_b(&current, &previous),
        consistency: 0.5,
        chosen: pair.map(|p| p.0),
        rejected: pair.map(|p| p.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(response_id: i64, prompt_id: i64, reward: f64, previous_reward: f64) -> CreamRewardRow {
        CreamRewardRow {
            response_id,
            prompt_id,
            reward,
            previous_reward,
        }
    }

    /// Prompt 1: rankings agree fully (τ 1, C 1); prompt 2: reversed (τ −1, C 0); prompt 3:
    /// every reward equal (no pair, τ undefined). Average C = ½ over the two defined.
    #[test]
    fn pairs_are_mt_best_and_worst_and_c_averages_over_defined_prompts() {
        let rewards = [
            row(1, 1, 0.3, 3.0),
            row(2, 1, 0.1, 1.0),
            row(3, 1, 0.2, 2.0),
            row(4, 2, 0.1, 2.0),
            row(5, 2, 0.2, 1.0),
            row(6, 3, 0.5, 0.5),
            row(7, 3, 0.5, 0.7),
        ];
        let (prompts, pairs) = compare(&rewards, CreamRate::Average);
        assert_eq!(pairs, BTreeMap::from([(1, (1, 2)), (2, (5, 4))]));
        let taus: Vec<Option<f64>> = prompts.iter().map(|p| p.tau).collect();
        assert_eq!(taus, vec![Some(1.0), Some(-1.0), None]);
        assert!(prompts.iter().all(|p| p.consistency == 0.5));
        let (prompts, _) = compare(&rewards, CreamRate::PerPrompt);
        let cs: Vec<f64> = prompts.iter().map(|p| p.consistency).collect();
        assert_eq!(cs, vec![1.0, 0.0, 0.5]);
    }
}
