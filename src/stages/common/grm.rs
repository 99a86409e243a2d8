//! The generative reward model: the model as a judge of pairs, and score-grm's params
//! (which consistency-filter and train read from score-grm's input instead of repeating
//! them).
//!
//! `pairwise`: the judge template renders `(x, A=y1, B=y2)`; `P(A) = softmax(l_A, l_B)[0]`
//! of the two verdict tokens at the answer position. With `swap` the order `(A=y2, B=y1)`
//! is judged too and `p_grm = ½·[P(A|y1,y2) + 1 − P(A|y2,y1)]`; `position_flip` is true when
//! the judge picks the same letter in both orders. `pointwise`: each response is judged
//! alone; `s(y)` = expected value over the score tokens; `p_grm = σ((s(y1) − s(y2))/τ)`.
//! A reward model as the judge (a checkpoint with a score head, `model@reward_model`)
//! scores each response's prompt and response ids as generate stored them,
//! `s(y) = r(x, y)`, and is written as pointwise (`p_grm = σ((r(y1) − r(y2))/τ)`, the
//! Bradley–Terry probability at τ = 1; the judge ids are the RM's input; no judge tokens).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::judge::{self, JudgeTemplate, Shape};
use crate::engine::stage::TaskContext;
use crate::loss::bernoulli::sigmoid;
use crate::model::config::Head;
use crate::model::reward::rewards_vec;
use crate::model::score::verdict_probs_vec;
use crate::model::{Adapters, Model};
use crate::tables::grm_scores::{GrmMode, GrmScoreRow};
use crate::tables::judge_tokens::JudgeTokenRow;
use crate::tables::pairs::PairRow;
use crate::tables::responses::{self, ResponseRow};

/// score-grm's `meta` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaJudgeParams {
    /// Judgments sampled per response.
    pub judgments: usize,
    /// Temperature of the judgment sampling.
    pub temperature: f64,
    /// Meta-judge template file (relative to the pipeline file) or `builtin:<name>`;
    /// `null`: the world's meta-judge format (`builtin:world-meta`). Absent: not in the
    /// key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<PathBuf>,
}

impl Default for MetaJudgeParams {
    fn default() -> Self {
        MetaJudgeParams {
            judgments: 4,
            temperature: 1.0,
            template: None,
        }
    }
}

/// Params of `score-grm`: how the model judges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreGrmParams {
    pub mode: GrmMode,
    /// Judge template file (relative to the pipeline file), or `builtin:<name>`;
    /// `null`: the world's built-in template of the mode.
    pub template: Option<PathBuf>,
    /// Pairwise: also judge the swapped order and average.
    pub swap: bool,
    /// Pairwise verdict strings `[A, B]` (one token each).
    pub verdicts: [String; 2],
    /// Pointwise score strings, worst first (one token each); values 1..=n.
    pub scores: Vec<String>,
    /// Pointwise temperature τ in `σ(Δs/τ)`.
    pub tau: f64,
    /// Judge prompts per forward pass (speed only).
    pub batch_size: usize,
    /// Meta-Rewarding: also sample judgments and let the model meta-judge them into judge
    /// pairs ([`super::meta_judge`]; pointwise, the built-in world). Absent: off, and not
    /// in the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<MetaJudgeParams>,
}

impl Default for ScoreGrmParams {
    fn default() -> Self {
        ScoreGrmParams {
            mode: GrmMode::Pairwise,
            template: None,
            swap: true,
            verdicts: ["A".into(), "B".into()],
            scores: (1..=5).map(|i| i.to_string()).collect(),
            tau: 1.0,
            batch_size: 64,
            meta: None,
        }
    }
}

/// The judge template of `p`: a file relative to the pipeline, a `builtin:` name, or the
/// built-in template of the mode.
pub fn load_template(ctx: &TaskContext, p: &ScoreGrmParams) -> anyhow::Result<JudgeTemplate> {
    let (shape, default, origin) = match p.mode {
        GrmMode::Pairwise => (
            Shape::Pairwise,
            judge::DEFAULT_PAIRWISE,
            "built-in pairwise",
        ),
        GrmMode::Pointwise => (
            Shape::Pointwise,
            judge::DEFAULT_POINTWISE,
            "built-in pointwise",
        ),
    };
    judge::load_or(&ctx.pipeline_dir, &p.template, shape, (default, origin))
}

/// The meta-judge template of `meta`: a file relative to the pipeline, a `builtin:` name,
/// or the world's meta-judge format.
pub fn load_meta_template(
    ctx: &TaskContext,
    meta: &MetaJudgeParams,
) -> anyhow::Result<JudgeTemplate> {
    let default = (judge::DEFAULT_META, "built-in meta-judge");
    judge::load_or(&ctx.pipeline_dir, &meta.template, Shape::Meta, default)
}

/// Responses by `response_id`.
pub type Responses = BTreeMap<i64, ResponseRow>;

/// What judging a set of pairs gives: a row per pair, and the tokens read.
pub struct Judged {
    pub scores: Vec<GrmScoreRow>,
    pub tokens: Vec<JudgeTokenRow>,
    /// Pointwise: each response's judge prompt and its score tokens' logits at the answer
    /// position (what Meta-Rewarding samples judgments from); empty otherwise.
    pub pointwise: BTreeMap<i64, PointwiseJudgment>,
}

/// One response as the pointwise judge saw it.
pub struct PointwiseJudgment {
    pub prompt: Vec<u32>,
    /// The logits of `ScoreGrmParams::scores`' tokens, in that order.
    pub logits: Vec<f32>,
}

/// Judge every pair of `pairs` (in order) with `model` as `p` says.
pub fn judge_pairs(
    model: &Model,
    template: &JudgeTemplate,
    p: &ScoreGrmParams,
    responses: &Responses,
    pairs: &[PairRow],
) -> anyhow::Result<Judged> {
    if model.config().head == Head::Score {
        return reward_model_pairs(model, p, responses, pairs);
    }
    let judge = Judge { model, template, p };
    match p.mode {
        GrmMode::Pairwise => judge.pairwise(responses, pairs),
        GrmMode::Pointwise => judge.pointwise(responses, pairs),
    }
}

/// Every pair judged by a reward model (see the module docs).
fn reward_model_pairs(
    model: &Model,
    p: &ScoreGrmParams,
    responses: &Responses,
    pairs: &[PairRow],
) -> anyhow::Result<Judged> {
    let seqs: Vec<Vec<u32>> = responses
        .values()
        .map(|r| [r.prompt_ids.as_slice(), &r.token_ids].concat())
        .collect();
    let pad = model.text.pad_id();
    let rewards = rewards_vec(&model.decoder, &seqs, pad, Adapters::On, p.batch_size)?;
    let by_id: BTreeMap<i64, (f64, &Vec<u32>)> = responses
        .keys()
        .zip(rewards.iter().zip(&seqs))
        .map(|(&id, (&r, seq))| (id, (f64::from(r), seq)))
        .collect();
    let scores = pairs
        .iter()
        .map(|pair| {
            let get = |id| {
                by_id.get(&id).copied().ok_or_else(|| {
                    anyhow::anyhow!(
                        "pair {} names response {id}, which does not exist",
                        pair.pair_id
                    )
                })
            };
            let ((s1, ids1), (s2, ids2)) = (get(pair.response_id_1)?, get(pair.response_id_2)?);
            let q = sigmoid((s1 - s2) / p.tau);
            Ok(GrmScoreRow {
                score_1: Some(s1),
                score_2: Some(s2),
                tau: Some(p.tau),
                ..GrmScoreRow::judged(
                    pair.pair_id,
                    GrmMode::Pointwise,
                    q,
                    ids1.clone(),
                    Some(ids2.clone()),
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Judged {
        scores,
        tokens: Vec::new(),
        pointwise: BTreeMap::new(),
    })
}

fn token_rows(mode: GrmMode, tokens: Vec<(String, u32, f64)>) -> Vec<JudgeTokenRow> {
    tokens
        .into_iter()
        .map(|(token, id, value)| JudgeTokenRow {
            mode,
            token,
            token_id: id as i32,
            value,
        })
        .collect()
}

/// Who judges, in which words, by which params.
struct Judge<'a> {
    model: &'a Model,
    template: &'a JudgeTemplate,
    p: &'a ScoreGrmParams,
}

impl Judge<'_> {
    fn pairwise(&self, responses: &Responses, pairs: &[PairRow]) -> anyhow::Result<Judged> {
        let Judge { model, template, p } = *self;
        let a = judge::single_token(&model.text, &p.verdicts[0], "verdict")?;
        let b = judge::single_token(&model.text, &p.verdicts[1], "verdict")?;
        let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
        for (i, pair) in pairs.iter().enumerate() {
            let (y1, y2) = (
                responses::get(responses, pair.response_id_1, pair.pair_id)?,
                responses::get(responses, pair.response_id_2, pair.pair_id)?,
            );
            let t12 = template.pairwise(&y1.prompt, &y1.text, &y2.text)?;
            if i == 0 {
                judge::check_seam(&model.text, &t12, &p.verdicts[0], a)?;
                judge::check_seam(&model.text, &t12, &p.verdicts[1], b)?;
            }
            fwd.push(judge::encode(&model.text, &t12)?);
            if p.swap {
                let t21 = template.pairwise(&y1.prompt, &y2.text, &y1.text)?;
                bwd.push(judge::encode(&model.text, &t21)?);
            }
        }
        let pad = model.text.pad_id();
        let probs = |prompts: &[Vec<u32>]| {
            if prompts.is_empty() {
                return Ok(Vec::new());
            }
            verdict_probs_vec(
                &model.decoder,
                prompts,
                (a, b),
                pad,
                Adapters::On,
                p.batch_size,
            )
        };
        let p12 = probs(&fwd)?;
        let p21 = probs(&bwd)?;
        let mut scores = Vec::with_capacity(pairs.len());
        for (i, pair) in pairs.iter().enumerate() {
            let pa12 = f64::from(p12[i][0]);
            let (pa21, q, flip) = if p.swap {
                let pa21 = f64::from(p21[i][0]);
                let flip = (pa12 > 0.5) == (pa21 > 0.5);
                (Some(pa21), 0.5 * (pa12 + 1.0 - pa21), Some(flip))
            } else {
                (None, pa12, None)
            };
            let ids = (fwd[i].clone(), bwd.get(i).cloned());
            scores.push(GrmScoreRow {
                p_a_12: Some(pa12),
                p_a_21: pa21,
                position_flip: flip,
                ..GrmScoreRow::judged(pair.pair_id, GrmMode::Pairwise, q, ids.0, ids.1)
            });
        }
        let tokens = vec![
            (p.verdicts[0].clone(), a, 1.0),
            (p.verdicts[1].clone(), b, 0.0),
        ];
        Ok(Judged {
            scores,
            tokens: token_rows(GrmMode::Pairwise, tokens),
            pointwise: BTreeMap::new(),
        })
    }

    fn pointwise(&self, responses: &Responses, pairs: &[PairRow]) -> anyhow::Result<Judged> {
        let Judge { model, template, p } = *self;
        let ids: Vec<u32> = p
            .scores
            .iter()
            .map(|s| judge::single_token(&model.text, s, "score string"))
            .collect::<anyhow::Result<_>>()?;
        let values: Vec<f64> = (1..=ids.len()).map(|v| v as f64).collect();
        // Each response is judged once, whatever the number of pairs it is in.
        let mut prompts = BTreeMap::new();
        for (i, (id, r)) in responses.iter().enumerate() {
            let t = template.pointwise(&r.prompt, &r.text)?;
            if i == 0 {
                for (s, &token) in p.scores.iter().zip(&ids) {
                    judge::check_seam(&model.text, &t, s, token)?;
                }
            }
            prompts.insert(*id, judge::encode(&model.text, &t)?);
        }
        let order: Vec<i64> = prompts.keys().copied().collect();
        let all: Vec<Vec<u32>> = prompts.values().cloned().collect();
        let pad = model.text.pad_id();
        let (mut scores, mut logits) = (Vec::with_capacity(all.len()), Vec::new());
        for chunk in all.chunks(p.batch_size.max(1)) {
            let l = judge::last_logits(&model.decoder, chunk, &ids, pad)?;
            let s = judge::expected_scores_of(&l, &values)?;
            scores.extend(s.detach().to_vec1::<f32>()?.into_iter().map(f64::from));
            logits.extend(l.to_vec2::<f32>()?);
        }
        let score: BTreeMap<i64, f64> = order.iter().copied().zip(scores).collect();
        let rows = pairs
            .iter()
            .map(|pair| {
                let (r1, r2) = (pair.response_id_1, pair.response_id_2);
                let (s1, s2) = (score[&r1], score[&r2]);
                let q = sigmoid((s1 - s2) / p.tau);
                let ids = (prompts[&r1].clone(), Some(prompts[&r2].clone()));
                GrmScoreRow {
                    score_1: Some(s1),
                    score_2: Some(s2),
                    tau: Some(p.tau),
                    ..GrmScoreRow::judged(pair.pair_id, GrmMode::Pointwise, q, ids.0, ids.1)
                }
            })
            .collect();
        let tokens = p
            .scores
            .iter()
            .zip(&ids)
            .zip(&values)
            .map(|((s, &id), &v)| (s.clone(), id, v))
            .collect();
        let pointwise = order
            .into_iter()
            .zip(logits)
            .map(|(id, logits)| {
                let prompt = prompts.remove(&id).expect("every response has a prompt");
                (id, PointwiseJudgment { prompt, logits })
            })
            .collect();
        Ok(Judged {
            scores: rows,
            tokens: token_rows(GrmMode::Pointwise, tokens),
            pointwise,
        })
    }
}
