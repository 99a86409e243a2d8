//! `grm-winrate@k`: the win rate of Mt's answers over M0's on held-out
//! prompts, judged by a fixed judge model — by default M0's own generative
//! reward model (no external judge).
//!
//! Inputs: `candidate` (an `answers` task of Mt, default `answers@k`),
//! `base` (an `answers` task of M0, default `answers-m0`) and `judge` (a
//! checkpoint, default `model@0`). Each prompt's two answers are judged
//! pairwise in both orders with the judge template (default
//! `builtin:mt-bench-pair`, see [`common::judge`]):
//! `p_win = ½·[P(A | A=Mt, B=M0) + 1 − P(A | A=M0, B=Mt)]`, the
//! swap-averaged probability that Mt's answer is better. A prompt is a win
//! when `p_win > ½`, a tie when the two answers are the same tokens (not
//! judged, `p_win = ½`) or `p_win = ½`, else a loss; `win_rate` = (wins +
//! ½·ties) / n. `position_flip` is true when the judge picks the same letter
//! in both orders.
//!
//! **Limitation**: the judge is one of the two contestants' own model (M0)
//! — small, position-biased, and blind to errors it would make itself. The
//! number measures whether Mt moved towards what M0 *judges* better, not
//! whether it got better; use `scir export --model-answers` and an external
//! judge (MT-Bench, AlpacaEval) for that.
//!
//! Writes [`grm_winrate_pairs` and `grm_winrate`](crate::tables::grm_winrate).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::common;
use super::common::judge::{self, JudgeTemplate};
use crate::engine::stage::{DeclaredTable, Slot, Stage, TaskContext};
use crate::model::score::verdict_probs_vec;
use crate::model::{Adapters, Model, Weights};
use crate::table::Table;
use crate::tables::answers::{self, AnswerRow};
use crate::tables::grm_winrate::{WinratePairRow, WinrateRow};
/// The default judge template.
pub const DEFAULT_TEMPLATE: &str = "builtin:mt-bench-pair";

/// Params of `grm-winrate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrmWinrateParams {
    /// Judge template file (relative to the pipeline file) or `builtin:<name>`.
    pub template: PathBuf,
    /// Verdict strings `[A, B]` (one token each after the template's prefill).
    pub verdicts: [String; 2],
    /// Judge prompts per forward pass (speed only).
    pub batch_size: usize,
}

impl Default for GrmWinrateParams {
    fn default() -> Self {
        GrmWinrateParams {
            template: DEFAULT_TEMPLATE.into(),
            verdicts: ["A".into(), "B".into()],
            batch_size: 8,
        }
    }
}

/// The `grm-winrate` stage.
pub struct GrmWinrate;

impl Stage for GrmWinrate {
    type Params = GrmWinrateParams;
    /// Bump when the output changes for the same inputs and params.
    const VERSION: u32 = 3;
    const INPUTS: &'static [Slot] = &[
        Slot::checkpoint("judge").by_default("model@0"),
        Slot::tables("candidate").by_default("answers@k"),
        Slot::tables("base").by_default("answers-m0"),
    ];
    const TABLES: &'static [DeclaredTable] = &[WinratePairRow::declared, WinrateRow::declared];

    fn external_files(&self, p: &GrmWinrateParams) -> Vec<PathBuf> {
        judge::template_file(&Some(p.template.clone()))
            .into_iter()
            .collect()
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let (template, _) = judge::load_named(&ctx.pipeline_dir, &p.template)?;
        let cand = answers::by_prompt(ctx.input("candidate")?)?;
        let base = answers::by_prompt(ctx.input("base")?)?;
        let rows: Vec<(&AnswerRow, &AnswerRow)> = cand
            .values()
            .map(|c| {
                base.get(&c.prompt_id).map(|b| (c, b)).ok_or_else(|| {
                    crate::user_err!(
                        "{}: prompt {} has an answer from {} but none from {}; both answers \
                         tasks must answer the same prompts",
                        ctx.task,
                        c.prompt_id,
                        ctx.inputs["candidate"].task,
                        ctx.inputs["base"].task
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let model = common::load_model(ctx.input("judge")?, Weights::Frozen)?;
        let bar = ctx.progress(rows.len() as u64, "grm-winrate");
        let judged = judge_rows(&model, &template, p, &rows, &mut |n| bar.inc(n))?;
        bar.finish_and_clear();
        let out = Outcomes::new(&rows, &judged);
        ctx.log(&format!(
            "{} prompts: {} wins, {} ties, {} losses (win rate {:.3})",
            rows.len(),
            out.count("win"),
            out.count("tie"),
            out.count("loss"),
            out.win_rate()
        ));
        let summary = out.summary_row(&rows);
        ctx.write_rows(out.pair_rows(&rows))?;
        ctx.write_rows(vec![summary])
    }
}

/// `(P(A) with A = candidate, P(A) with A = base)` per row; `None` for identical answers.
fn judge_rows(
    model: &Model,
    template: &JudgeTemplate,
    p: &GrmWinrateParams,
    rows: &[(&AnswerRow, &AnswerRow)],
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<Vec<Option<(f64, f64)>>> {
    let a = judge::single_token(&model.text, &p.verdicts[0], "verdict")?;
    let b = judge::single_token(&model.text, &p.verdicts[1], "verdict")?;
    let pad = model.text.pad_id();
    let mut out = Vec::with_capacity(rows.len());
    let mut checked = false;
    for chunk in rows.chunks(p.batch_size.max(1)) {
        let mut prompts = Vec::new();
        for (c, base) in chunk.iter().filter(|(c, b)| c.token_ids != b.token_ids) {
            let fwd = template.pairwise(&c.prompt, &c.text, &base.text)?;
            if !checked {
                judge::check_seam(&model.text, &fwd, &p.verdicts[0], a)?;
                judge::check_seam(&model.text, &fwd, &p.verdicts[1], b)?;
                checked = true;
            }
            let bwd = template.pairwise(&c.prompt, &base.text, &c.text)?;
            prompts.push(judge::encode(&model.text, &fwd)?);
            prompts.push(judge::encode(&model.text, &bwd)?);
        }
        let probs = if prompts.is_empty() {
            Vec::new()
        } else {
            verdict_probs_vec(
                &model.decoder,
                &prompts,
                (a, b),
                pad,
                Adapters::On,
                2 * p.batch_size.max(1),
            )?
        };
        let mut next = probs.chunks(2);
        for (c, base) in chunk {
            if c.token_ids == base.token_ids {
                out.push(None);
                continue;
            }
            let pr = next
                .next()
                .ok_or_else(|| crate::internal_err!("a judged pair has no probabilities"))?;
            out.push(Some((f64::from(pr[0][0]), f64::from(pr[1][0]))));
        }
        progress(chunk.len() as u64);
    }
    Ok(out)
}

/// Per-row outcomes.
struct Outcomes {
    p_win: Vec<f64>,
    judged: Vec<Option<(f64, f64)>>,
    outcome: Vec<&'static str>,
}

impl Outcomes {
    fn new(rows: &[(&AnswerRow, &AnswerRow)], judged: &[Option<(f64, f64)>]) -> Self {
        let p_win: Vec<f64> = judged
            .iter()
            .map(|j| j.map_or(0.5, |(p12, p21)| 0.5 * (p12 + 1.0 - p21)))
            .collect();
        let outcome = p_win
            .iter()
            .map(|&p| {
                if p > 0.5 {
                    "win"
                } else if p < 0.5 {
                    "loss"
                } else {
                    "tie"
                }
            })
            .collect();
        debug_assert_eq!(rows.len(), judged.len());
        Outcomes {
            p_win,
            judged: judged.to_vec(),
            outcome,
        }
    }
    fn count(&self, what: &str) -> usize {
        self.outcome.iter().filter(|o| **o == what).count()
    }
    fn win_rate(&self) -> f64 {
        let n = self.outcome.len().max(1) as f64;
        (self.count("win") as f64 + 0.5 * self.count("tie") as f64) / n
    }
    fn flips(&self) -> Vec<Option<bool>> {
        self.judged
            .iter()
            .map(|j| j.map(|(p12, p21)| (p12 > 0.5) == (p21 > 0.5)))
            .collect()
    }
    fn pair_rows(&self, rows: &[(&AnswerRow, &AnswerRow)]) -> Vec<WinratePairRow> {
        let flips = self.flips();
        rows.iter()
            .enumerate()
            .map(|(i, (c, b))| WinratePairRow {
                prompt_id: c.prompt_id,
                identical: self.judged[i].is_none(),
                p_a_12: self.judged[i].map(|x| x.0),
                p_a_21: self.judged[i].map(|x| x.1),
                p_win: self.p_win[i],
                position_flip: flips[i],
                outcome: self.outcome[i].to_string(),
                length_candidate: c.token_ids.len() as i32,
                length_base: b.token_ids.len() as i32,
            })
            .collect()
    }
    fn summary_row(&self, rows: &[(&AnswerRow, &AnswerRow)]) -> WinrateRow {
        let n = rows.len();
        let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let flips: Vec<bool> = self.flips().into_iter().flatten().collect();
        let judged = flips.len();
        let flip_rate =
            (judged > 0).then(|| flips.iter().filter(|f| **f).count() as f64 / judged as f64);
        let len = |f: fn(&(&AnswerRow, &AnswerRow)) -> usize| {
            mean(rows.iter().map(|r| f(r) as f64).collect())
        };
        WinrateRow {
            n: n as i64,
            wins: self.count("win") as i64,
            ties: self.count("tie") as i64,
            losses: self.count("loss") as i64,
            win_rate: self.win_rate(),
            mean_p_win: mean(self.p_win.clone()),
            judged: judged as i64,
            position_flip_rate: flip_rate,
            identical: (n - judged) as i64,
            mean_length_candidate: len(|r| r.0.token_ids.len()),
            mean_length_base: len(|r| r.1.token_ids.len()),
        }
    }
}
