//! The training set of `train@k`, assembled by `pair_id` from the upstream
//! tables: token ids from `generate` (responses) and `score-grm` (judge
//! prompts, verdict/score tokens), cached log-probs from `score-irm`, labels
//! and selection from `consistency-filter`. Nothing is re-tokenised. β of the
//! IRM and the judge's mode and τ are score-irm's and score-grm's params.

use super::grm::ScoreGrmParams;
use super::irm::{self, IrmNorm, ScoreIrmParams};
use crate::engine::stage::TaskContext;
use crate::loss::Preferred;
use crate::model::Model;
use crate::model::score::Pair;
use crate::tables::cream::CreamPromptRow;
use crate::tables::filter_pairs::FilterPairRow;
use crate::tables::grm_scores::{GrmMode, GrmScoreRow};
use crate::tables::judge_pairs::JudgePairRow;
use crate::tables::judge_tokens::JudgeTokenRow;
use crate::tables::response_logps::ResponseLogpRow;
use crate::tables::{keyed, responses};

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
    /// The fixed label, when the filter gave one.
    pub label: Option<Preferred>,
    /// `label` is forced by a length control: it holds under per-step selection too.
    pub forced: bool,
    /// CREAM's consistency `C` of the pair's prompt (the filter's `mode: cream`).
    pub cream_consistency: Option<f64>,
}

/// The GRM's token side.
#[derive(Debug, Clone)]
pub struct JudgeSpec {
    pub mode: GrmMode,
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
    /// Sum or per-token log-ratios in the implicit reward (score-irm's).
    pub irm_norm: IrmNorm,
}

/// Read and join the inputs of `ctx` (selected pairs only, in pair-id order).
pub fn load(ctx: &TaskContext) -> anyhow::Result<TrainData> {
    let responses = responses::by_id(ctx.input("generation")?)?;
    let irm = ctx.input("irm")?;
    let logps = keyed(irm.rows()?, |r: &ResponseLogpRow| r.response_id);
    let irm_settings = irm.params_as::<ScoreIrmParams>()?;
    let (irm_beta, irm_norm) = (irm_settings.beta, irm_settings.norm);
    let grm = ctx.input("grm")?;
    let judge_ids = keyed(grm.rows()?, |r: &GrmScoreRow| r.pair_id);
    let settings: ScoreGrmParams = grm.params_as()?;
    let tokens: Vec<JudgeTokenRow> = grm.rows()?;
    let judge = JudgeSpec {
        mode: settings.mode,
        token_ids: tokens.iter().map(|t| t.token_id as u32).collect(),
        values: tokens.iter().map(|t| t.value).collect(),
        tau: settings.tau,
    };
    let filter = ctx.input("filter")?;
    let cream = keyed(filter.rows()?, |r: &CreamPromptRow| r.prompt_id);
    let mut pairs = Vec::new();
    for f in filter.rows::<FilterPairRow>()? {
        if !f.selected {
            continue;
        }
        let pid = f.pair_id;
        let (a, b) = (
            responses::get(&responses, f.response_id_1, pid)?,
            responses::get(&responses, f.response_id_2, pid)?,
        );
        let missing = || anyhow::anyhow!("pair {pid} has no log-probs or judge prompts upstream");
        let (la, lb) = (
            logps.get(&f.response_id_1).ok_or_else(missing)?,
            logps.get(&f.response_id_2).ok_or_else(missing)?,
        );
        let judged = judge_ids.get(&pid).ok_or_else(missing)?;
        pairs.push(TrainPair {
            pair_id: pid,
            prompt: a.prompt_ids.clone(),
            y1: a.token_ids.clone(),
            y2: b.token_ids.clone(),
            dpo_ref: [la.logp_policy, lb.logp_policy],
            irm_ref: [la.logp_irm_ref, lb.logp_irm_ref],
            judge_1: judged.judge_ids_1.clone(),
            judge_2: judged.judge_ids_2.clone(),
            label: f.label,
            forced: f.forced,
            cream_consistency: cream.get(&f.prompt_id).map(|c| c.consistency),
        });
    }
    pairs.sort_by_key(|p| p.pair_id);
    Ok(TrainData {
        pairs,
        judge,
        irm_beta,
        irm_norm,
    })
}

/// score-grm's judge pairs as training pairs (chosen as y1, labelled y1), with `model`'s
/// log-probs of the two judgments as their DPO reference: call it before the first step.
/// With `keep: Some(n)`, only the `n` the meta-judge separated most
/// (`chosen_strength − rejected_strength`, largest first; then response id), in response
/// order ([`judge_cap`]).
pub fn judge_pairs(
    ctx: &TaskContext,
    model: &Model,
    keep: Option<usize>,
) -> anyhow::Result<Vec<TrainPair>> {
    let grm = ctx.input("grm")?;
    if grm.params_as::<ScoreGrmParams>()?.meta.is_none() {
        anyhow::bail!(crate::user_err!(
            "{}: `judge_pairs: true` trains on the judge pairs score-grm makes with `meta`, and \
             this arm's score-grm has none; set `score-grm: {{ meta: {{ judgments: 4 }} }}`",
            ctx.task
        ));
    }
    let mut rows: Vec<JudgePairRow> = grm.rows()?;
    if let Some(n) = keep.filter(|&n| n < rows.len()) {
        let gap = |r: &JudgePairRow| r.chosen_strength - r.rejected_strength;
        rows.sort_by(|a, b| {
            gap(b)
                .total_cmp(&gap(a))
                .then(a.response_id.cmp(&b.response_id))
        });
        rows.truncate(n);
        rows.sort_by_key(|r| r.response_id);
    }
    let items: Vec<Pair> = rows
        .iter()
        .flat_map(|r| {
            [&r.chosen_ids, &r.rejected_ids].map(|y| Pair {
                prompt: r.judge_ids.clone(),
                response: y.clone(),
            })
        })
        .collect();
    let logps = irm::score_with(model, &items, REFERENCE_BATCH)?;
    Ok(rows
        .into_iter()
        .zip(logps.chunks(2))
        .map(|(r, lp)| TrainPair {
            // Negative: never an actor pair's id (those are ≥ 0).
            pair_id: -1 - r.response_id,
            prompt: r.judge_ids.clone(),
            y1: r.chosen_ids,
            y2: r.rejected_ids,
            dpo_ref: [lp[0], lp[1]],
            irm_ref: [lp[0], lp[1]],
            judge_1: r.judge_ids,
            judge_2: None,
            label: Some(Preferred::Y1),
            forced: false,
            cream_consistency: None,
        })
        .collect())
}

/// Judge pairs scored per forward pass for their reference log-probs (speed only).
const REFERENCE_BATCH: usize = 8;

/// How many judge pairs keep them at most `share` of a training set with `actor` actor
/// pairs: the largest `j` with `j / (actor + j) ≤ share`.
pub fn judge_cap(share: f64, actor: usize) -> usize {
    if share <= 0.0 {
        return 0;
    }
    ((share / (1.0 - share)) * actor as f64 + 1e-9).floor() as usize
}

#[cfg(test)]
mod tests {
    use super::judge_cap;

    /// 64 actor pairs: a share of 0.2 allows 16 judge pairs (16/80 = 0.2), 0.5 allows 64.
    #[test]
    fn judge_pairs_are_capped_at_their_share() {
        assert_eq!(judge_cap(0.2, 64), 16);
        assert_eq!(judge_cap(0.5, 64), 64);
        assert_eq!(judge_cap(0.15, 64), 11);
        assert_eq!(judge_cap(0.0, 64), 0);
        assert_eq!(judge_cap(0.3, 0), 0);
    }
}
