//! `consistency-filter@k`: joins the IRM and GRM preferences by `pair_id`
//! (never by position), measures their agreement at the start of the
//! iteration and writes the training set.
//!
//! A pair is `consistent` iff `(p_irm−½)(p_grm−½) > 0` and
//! `min(|p_irm−½|, |p_grm−½|) ≥ delta` (the selection rule of
//! [`crate::loss::select_pair`]); `agreed` is the direction both prefer.
//! Modes:
//! * `dynamic` (SCIR, default): every pair goes to training; selection
//!   happens per step with the current θ. `label` is the agreement now
//!   (informational).
//! * `static`: only pairs consistent now, labelled by that agreement.
//! * `grm_only` (SRLM): label = the GRM's verdict; pairs with
//!   `|p_grm − ½| < margin` are dropped.
//! * `cream` (CREAM, [`cream`]): one pair per prompt, Mt's best and worst response by
//!   score-irm's implicit reward; the previous model (slots `previous_model`,
//!   `previous_ref`: `model@k-2` against `model@irm_ref` unless bound otherwise; only
//!   this mode loads them) ranks the responses too, and Kendall's τ of the two rankings gives
//!   the consistency `C` train weighs the pair with (`cream_rate: average | per_prompt`).
//!   The GRM's columns are still filled in, for comparison; it chooses nothing.
//!
//! Length controls ([`length_control`]): `unfinished: keep | lose | drop` (any mode) and
//! `rho` (Meta-Rewarding's length-controlled choice of one pair per prompt from the
//! pointwise judge's scores; `grm_only` mode). The responses' lengths and EOS flags come
//! from the `generation` input.
//!
//! Writes [`filter_pairs`](crate::tables::filter_pairs),
//! [`filter_summary`](crate::tables::filter_summary) and the two
//! [`cream`](crate::tables::cream) tables (empty unless `mode: cream`).
//!
//! The trained-pairs rate ([`trained_consistency`]) needs the slots
//! `previous` (`consistency-filter@k-1`) and `previous_generation`
//! (`generate@k-1`). They are *optional inputs*: the engine leaves them
//! unbound where `@k-1` is before the first iteration (k = 1), and the stage
//! then writes 0 / NULL. `model` (`model@k-1`, Mt) and `irm_ref` are the
//! checkpoints it is scored with; `irm_ref` binds `model@irm_ref`, the model
//! chain's IRM reference, as score-irm's does, so the two cannot differ. β and
//! the judge settings (template, mode, verdicts, swap, τ) are score-grm's and
//! score-irm's own, read from their inputs' params.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::cream::{self, CreamRate, PREVIOUS_MODEL, PREVIOUS_REF};
use super::common::length_control::{self, Candidate, PairRule, Unfinished};
use super::common::slots;
use super::common::trained_consistency::{self, TrainedConsistency};
use crate::engine::stage::{DeclaredTable, ParamError, Slot, Stage, TaskContext};
use crate::loss::{Preferred, select_pair};
use crate::table::Table;
use crate::tables::cream::{CreamPromptRow, CreamRewardRow};
use crate::tables::filter_pairs::{FilterMode, FilterPairRow};
use crate::tables::filter_summary::FilterSummaryRow;
use crate::tables::grm_scores::GrmScoreRow;
use crate::tables::irm_pairs::IrmPairRow;
use crate::tables::responses::{self, ResponseRow};

/// Params of `consistency-filter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterParams {
    pub mode: FilterMode,
    /// δ of the consistency rule.
    pub delta: f64,
    /// `grm_only`: drop pairs with `|p_grm − ½| < margin`.
    pub margin: f64,
    /// Pairs with an unfinished response: `keep`, `lose` (the finished one wins) or `drop`.
    pub unfinished: Unfinished,
    /// `grm_only`: Meta-Rewarding's length-controlled choice of one pair per prompt with
    /// this ρ ∈ [0, 1] (needs score-grm `mode: pointwise`); `null`: every pair.
    pub rho: Option<f64>,
    /// `cream`: one `C` for all pairs (`average`, CREAM's) or each prompt's own.
    pub cream_rate: CreamRate,
}

impl Default for FilterParams {
    fn default() -> Self {
        FilterParams {
            mode: FilterMode::Dynamic,
            delta: 0.0,
            margin: 0.02,
            unfinished: Unfinished::Keep,
            rho: None,
            cream_rate: CreamRate::Average,
        }
    }
}

/// The `consistency-filter` stage.
pub struct ConsistencyFilter;

impl Stage for ConsistencyFilter {
    type Params = FilterParams;
    /// Bump when the output changes for the same inputs and params.
    const VERSION: u32 = 6;
    const INPUTS: &'static [Slot] = &[
        slots::IRM,
        slots::GRM,
        slots::MT,
        slots::IRM_REF,
        slots::GENERATION,
        Slot::tables("previous")
            .by_default("consistency-filter@k-1")
            .optional(),
        Slot::tables("previous_generation")
            .by_default("generate@k-1")
            .optional(),
        Slot::checkpoint(PREVIOUS_MODEL).by_default("model@k-2"),
        Slot::checkpoint(PREVIOUS_REF).by_default("model@irm_ref"),
    ];
    const TABLES: &'static [DeclaredTable] = &[
        FilterPairRow::declared,
        FilterSummaryRow::declared,
        CreamRewardRow::declared,
        CreamPromptRow::declared,
    ];

    fn validate(&self, p: &FilterParams) -> Result<(), ParamError> {
        for (name, x) in [("delta", p.delta), ("margin", p.margin)] {
            if !(0.0..0.5).contains(&x) {
                return Err(ParamError::at(
                    name,
                    format!("must be in [0, 0.5), got {x}"),
                ));
            }
        }
        match p.rho {
            Some(rho) if !(0.0..=1.0).contains(&rho) => Err(ParamError::at(
                "rho",
                format!("must be in [0, 1], got {rho}"),
            )),
            Some(_) if p.mode != FilterMode::GrmOnly => Err(ParamError::at(
                "rho",
                "applies to mode grm_only (the judge's scores choose the pair); set \
                 `mode: grm_only` or remove rho",
            )),
            _ if p.mode == FilterMode::Cream && p.unfinished != Unfinished::Keep => {
                Err(ParamError::at(
                    "unfinished",
                    "mode cream chooses its pairs by the implicit reward alone; remove \
                     `unfinished` or use another mode",
                ))
            }
            _ => Ok(()),
        }
    }
    fn run(&self, p: &FilterParams, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let irm: Vec<IrmPairRow> = ctx.input("irm")?.rows()?;
        let grm: Vec<GrmScoreRow> = ctx.input("grm")?.rows()?;
        let q_by_pair: BTreeMap<i64, f64> = grm.iter().map(|g| (g.pair_id, g.p_grm)).collect();
        if irm.len() != q_by_pair.len() || irm.iter().any(|r| !q_by_pair.contains_key(&r.pair_id)) {
            anyhow::bail!(
                "{}: the IRM and GRM tables score different pairs ({} vs {})",
                ctx.task,
                irm.len(),
                q_by_pair.len()
            );
        }
        let generated = responses::by_id(ctx.input("generation")?)?;
        let mut rows: Vec<FilterPairRow> = irm
            .iter()
            .map(|r| filter_row(p, r, q_by_pair[&r.pair_id]))
            .collect();
        for row in &mut rows {
            let done = |id| responses::get(&generated, id, row.pair_id).map(|r| r.finished);
            let rule = p
                .unfinished
                .rule(done(row.response_id_1)?, done(row.response_id_2)?);
            apply_rule(row, rule);
        }
        if let Some(rho) = p.rho {
            choose_per_prompt(ctx, rho, p.unfinished, &grm, &generated, &mut rows)?;
        }
        let (cream_rewards, cream_prompts) = match p.mode {
            FilterMode::Cream => {
                let ranking = cream::rank(ctx, p.cream_rate, &generated)?;
                keep_pairs(ctx, &ranking.pairs, &mut rows)?;
                (ranking.rewards, ranking.prompts)
            }
            _ => (Vec::new(), Vec::new()),
        };
        let trained = match (
            ctx.try_input("previous"),
            ctx.try_input("previous_generation"),
        ) {
            (Some(prev), Some(generation)) => trained_consistency::measure(ctx, prev, generation)?,
            _ => TrainedConsistency {
                pairs: 0,
                rate: None,
            },
        };
        let summary = summary_row(&rows, p.mode, &trained);
        ctx.log(&format!(
            "{} pairs, {} consistent, {} selected",
            rows.len(),
            summary.consistent,
            summary.selected
        ));
        ctx.write_rows(rows)?;
        ctx.write_rows(vec![summary])?;
        ctx.write_rows(cream_rewards)?;
        ctx.write_rows(cream_prompts)
    }
}

/// One pair's agreement, label and selection.
fn filter_row(p: &FilterParams, irm: &IrmPairRow, q: f64) -> FilterPairRow {
    let agreed = select_pair(irm.p_irm, q, p.delta);
    let (label, selected) = match p.mode {
        FilterMode::Dynamic => (agreed, true),
        FilterMode::Static => (agreed, agreed.is_some()),
        FilterMode::Cream => (None, false),
        FilterMode::GrmOnly => {
            let dir = if q > 0.5 {
                Preferred::Y1
            } else {
                Preferred::Y2
            };
            let keep = (q - 0.5).abs() >= p.margin && q != 0.5;
            (keep.then_some(dir), keep)
        }
    };
    FilterPairRow {
        pair_id: irm.pair_id,
        prompt_id: irm.prompt_id,
        response_id_1: irm.response_id_1,
        response_id_2: irm.response_id_2,
        p_irm: irm.p_irm,
        p_grm: q,
        consistent: agreed.is_some(),
        agreed,
        label,
        selected,
        forced: false,
    }
}

/// Apply an `unfinished` rule to a pair.
fn apply_rule(row: &mut FilterPairRow, rule: PairRule) {
    match rule {
        PairRule::AsIs => {}
        PairRule::Drop => {
            row.label = None;
            row.selected = false;
        }
        PairRule::Force(label) => {
            row.label = Some(label);
            row.selected = true;
            row.forced = true;
        }
    }
}

/// `rho`: keep one pair per prompt, the length-controlled choice among its responses by
/// the pointwise judge's scores ([`length_control::choose`]), labelled chosen ≻ rejected.
fn choose_per_prompt(
    ctx: &TaskContext,
    rho: f64,
    unfinished: Unfinished,
    grm: &[GrmScoreRow],
    generated: &BTreeMap<i64, ResponseRow>,
    rows: &mut [FilterPairRow],
) -> anyhow::Result<()> {
    let pair_responses: BTreeMap<i64, (i64, i64)> = rows
        .iter()
        .map(|r| (r.pair_id, (r.response_id_1, r.response_id_2)))
        .collect();
    let mut scores = BTreeMap::new();
    for g in grm {
        let (Some(s1), Some(s2)) = (g.score_1, g.score_2) else {
            anyhow::bail!(crate::user_err!(
                "{}: rho chooses pairs by the judge's per-response scores; set score-grm's \
                 `mode: pointwise`",
                ctx.task
            ));
        };
        if let Some(&(r1, r2)) = pair_responses.get(&g.pair_id) {
            scores.insert(r1, s1);
            scores.insert(r2, s2);
        }
    }
    let mut by_prompt: BTreeMap<i64, Vec<Candidate>> = BTreeMap::new();
    for (&id, &score) in &scores {
        let r = &generated[&id];
        by_prompt.entry(r.prompt_id).or_default().push(Candidate {
            response_id: id,
            length: r.length,
            finished: r.finished,
            score,
        });
    }
    let chosen: BTreeMap<i64, (i64, i64)> = by_prompt
        .iter()
        .filter_map(|(&prompt, c)| Some((prompt, length_control::choose(rho, unfinished, c)?)))
        .collect();
    select_per_prompt(&chosen, rows);
    Ok(())
}

/// Select, in each prompt, only the pair `chosen` names (`prompt → (winner, loser)`),
/// labelled winner ≻ loser; returns how many rows were selected.
fn select_per_prompt(chosen: &BTreeMap<i64, (i64, i64)>, rows: &mut [FilterPairRow]) -> usize {
    let mut selected = 0;
    for row in rows {
        let pick = chosen.get(&row.prompt_id).and_then(|&(w, l)| {
            match (row.response_id_1, row.response_id_2) {
                (a, b) if (a, b) == (w, l) => Some(Preferred::Y1),
                (a, b) if (a, b) == (l, w) => Some(Preferred::Y2),
                _ => None,
            }
        });
        row.label = pick;
        row.selected = pick.is_some();
        row.forced = false;
        selected += usize::from(row.selected);
    }
    selected
}

/// `cream`: select each prompt's pair; every one must be among generate's pairs.
fn keep_pairs(
    ctx: &TaskContext,
    chosen: &BTreeMap<i64, (i64, i64)>,
    rows: &mut [FilterPairRow],
) -> anyhow::Result<()> {
    if select_per_prompt(chosen, rows) < chosen.len() {
        anyhow::bail!(crate::user_err!(
            "{}: mode cream pairs each prompt's best and worst response, and generate did not \
             pair some of them; set generate's `pairs: all`",
            ctx.task
        ));
    }
    Ok(())
}

fn summary_row(
    rows: &[FilterPairRow],
    mode: FilterMode,
    trained: &TrainedConsistency,
) -> FilterSummaryRow {
    let n = rows.len();
    let count = |f: &dyn Fn(&FilterPairRow) -> bool| rows.iter().filter(|r| f(r)).count();
    let rate = |c: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
    let agree0 = count(&|r| select_pair(r.p_irm, r.p_grm, 0.0).is_some());
    let consistent = count(&|r| r.consistent);
    FilterSummaryRow {
        mode,
        pairs: n as i64,
        consistent: consistent as i64,
        agreement: rate(agree0),
        consistency_rate: rate(consistent),
        selected: count(&|r| r.selected) as i64,
        trained_pairs: trained.pairs,
        trained_consistency_rate: trained.rate,
    }
}
