//! `grm-winrate@k`: the win rate of Mt's answers over M0's on held-out
//! prompts, judged by a fixed judge model — by default M0's own generative
//! reward model (no external judge).
//!
//! Inputs: `candidate` (an `answers` task of Mt, default `answers@k`),
//! `base` (an `answers` task of M0, default `answers-m0`) and `judge` (a
//! checkpoint, default `model@0`). Each prompt's two answers are judged
//! pairwise in both orders with the judge template (default
//! `builtin:mt-bench-pair`, see [`super::judge`]):
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
//! ```text
//! grm_winrate_pairs  iteration Int32, prompt_id Int64, identical Boolean, p_a_12 Float64?
//!                    (P(A), A = Mt), p_a_21 Float64? (P(A), A = M0), p_win Float64,
//!                    position_flip Boolean? (NULL when identical), outcome Utf8
//!                    ("win" | "tie" | "loss"), length_candidate Int32, length_base Int32
//! grm_winrate        iteration Int32, n Int64, wins Int64, ties Int64, losses Int64,
//!                    win_rate Float64, mean_p_win Float64, judged Int64,
//!                    position_flip_rate Float64? (over judged prompts), identical Int64,
//!                    mean_length_candidate Float64, mean_length_base Float64
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::answers::{AnswerRow, read_answers};
use super::common::{self, Col};
use super::judge::{self, JudgeTemplate};
use crate::model::score::verdict_probs_vec;
use crate::model::{Adapters, Model, Weights};
use crate::stage::{Outputs, ParamError, Slot, SlotKind, Stage, TaskContext, resolve_typed};

/// Bump when the output changes for the same inputs and params.
pub const VERSION: u32 = 3;
pub const PAIRS: &str = "grm_winrate_pairs";
pub const SUMMARY: &str = "grm_winrate";
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

const SLOTS: &[Slot] = &[
    Slot {
        name: "judge",
        kind: SlotKind::Checkpoint,
    },
    Slot {
        name: "candidate",
        kind: SlotKind::Tables,
    },
    Slot {
        name: "base",
        kind: SlotKind::Tables,
    },
];

impl Stage for GrmWinrate {
    fn kind(&self) -> &'static str {
        "grm-winrate"
    }
    fn version(&self) -> u32 {
        VERSION
    }
    fn about(&self) -> &'static str {
        "win rate of Mt's answers over M0's on held-out prompts, judged by M0's own GRM"
    }
    fn resolve_params(&self, raw: serde_json::Value) -> Result<serde_json::Value, ParamError> {
        resolve_typed::<GrmWinrateParams>(raw)
    }
    fn inputs(&self) -> &'static [Slot] {
        SLOTS
    }
    fn default_bindings(&self, _params: &serde_json::Value) -> Vec<(&'static str, String)> {
        vec![
            ("judge", "model@0".into()),
            ("candidate", "answers@k".into()),
            ("base", "answers-m0".into()),
        ]
    }
    fn outputs(&self, _params: &serde_json::Value) -> Outputs {
        Outputs {
            tables: vec![
                (PAIRS.into(), pairs_schema()),
                (SUMMARY.into(), summary_schema()),
            ],
            checkpoint: false,
        }
    }
    fn external_files(&self, params: &serde_json::Value) -> Vec<PathBuf> {
        serde_json::from_value::<GrmWinrateParams>(params.clone())
            .ok()
            .and_then(|p| judge::template_file(&Some(p.template)))
            .into_iter()
            .collect()
    }
    fn run(&self, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let p: GrmWinrateParams = ctx.params()?;
        let template = load_template(ctx, &p)?;
        let cand = read_answers(ctx.input("candidate")?)?;
        let base = read_answers(ctx.input("base")?)?;
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
        let judged = judge_rows(&model, &template, &p, &rows, &mut |n| bar.inc(n))?;
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
        let k = ctx.iteration;
        let pairs = out.pairs_batch(k, &rows)?;
        let summary = out.summary_batch(k, &rows)?;
        ctx.write_table(PAIRS, &pairs)?;
        ctx.write_table(SUMMARY, &summary)
    }
}

fn load_template(ctx: &TaskContext, p: &GrmWinrateParams) -> anyhow::Result<JudgeTemplate> {
    let as_param = Some(p.template.clone());
    match judge::template_file(&as_param) {
        None => {
            let name = p.template.to_string_lossy();
            let name = name.trim_start_matches(judge::BUILTIN_PREFIX);
            JudgeTemplate::new(judge::builtin(name)?, &format!("built-in {name}"))
        }
        Some(rel) => {
            let path = ctx.pipeline_dir.join(rel);
            let src = std::fs::read_to_string(&path).map_err(|e| {
                crate::user_err!("{}: cannot read the judge template ({e})", path.display())
            })?;
            JudgeTemplate::new(&src, &path.display().to_string())
        }
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
    fn pairs_batch(
        &self,
        k: u32,
        rows: &[(&AnswerRow, &AnswerRow)],
    ) -> anyhow::Result<arrow::record_batch::RecordBatch> {
        common::batch(
            &pairs_schema(),
            k,
            vec![
                common::arr_i64(rows.iter().map(|(c, _)| c.prompt_id).collect()),
                common::arr_bool(self.judged.iter().map(Option::is_none).collect()),
                common::arr_opt_f64(self.judged.iter().map(|j| j.map(|x| x.0)).collect()),
                common::arr_opt_f64(self.judged.iter().map(|j| j.map(|x| x.1)).collect()),
                common::arr_f64(self.p_win.clone()),
                common::arr_opt_bool(self.flips()),
                common::arr_str(self.outcome.iter().map(|s| s.to_string()).collect()),
                common::arr_i32(rows.iter().map(|(c, _)| c.token_ids.len() as i32).collect()),
                common::arr_i32(rows.iter().map(|(_, b)| b.token_ids.len() as i32).collect()),
            ],
        )
    }
    fn summary_batch(
        &self,
        k: u32,
        rows: &[(&AnswerRow, &AnswerRow)],
    ) -> anyhow::Result<arrow::record_batch::RecordBatch> {
        let n = rows.len();
        let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let flips: Vec<bool> = self.flips().into_iter().flatten().collect();
        let judged = flips.len();
        let flip_rate =
            (judged > 0).then(|| flips.iter().filter(|f| **f).count() as f64 / judged as f64);
        let len = |f: fn(&(&AnswerRow, &AnswerRow)) -> usize| {
            mean(rows.iter().map(|r| f(r) as f64).collect())
        };
        common::batch(
            &summary_schema(),
            k,
            vec![
                common::arr_i64(vec![n as i64]),
                common::arr_i64(vec![self.count("win") as i64]),
                common::arr_i64(vec![self.count("tie") as i64]),
                common::arr_i64(vec![self.count("loss") as i64]),
                common::arr_f64(vec![self.win_rate()]),
                common::arr_f64(vec![mean(self.p_win.clone())]),
                common::arr_i64(vec![judged as i64]),
                common::arr_opt_f64(vec![flip_rate]),
                common::arr_i64(vec![(n - judged) as i64]),
                common::arr_f64(vec![len(|r| r.0.token_ids.len())]),
                common::arr_f64(vec![len(|r| r.1.token_ids.len())]),
            ],
        )
    }
}

fn pairs_schema() -> arrow::datatypes::SchemaRef {
    common::schema(&[
        ("prompt_id", Col::I64, false),
        ("identical", Col::Bool, false),
        ("p_a_12", Col::F64, true),
        ("p_a_21", Col::F64, true),
        ("p_win", Col::F64, false),
        ("position_flip", Col::Bool, true),
        ("outcome", Col::Str, false),
        ("length_candidate", Col::I32, false),
        ("length_base", Col::I32, false),
    ])
}

fn summary_schema() -> arrow::datatypes::SchemaRef {
    common::schema(&[
        ("n", Col::I64, false),
        ("wins", Col::I64, false),
        ("ties", Col::I64, false),
        ("losses", Col::I64, false),
        ("win_rate", Col::F64, false),
        ("mean_p_win", Col::F64, false),
        ("judged", Col::I64, false),
        ("position_flip_rate", Col::F64, true),
        ("identical", Col::I64, false),
        ("mean_length_candidate", Col::F64, false),
        ("mean_length_base", Col::F64, false),
    ])
}
