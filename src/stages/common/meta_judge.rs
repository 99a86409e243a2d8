//! Meta-Rewarding's judge pairs (score-grm's `meta`; [`crate::loss::meta_judge`] for the
//! rule).
//!
//! For every response: `judgments` judgments are sampled from the pointwise judge's score
//! distribution at the answer position (softmax of the score tokens' logits — those
//! score-grm's judging already computed — at `temperature`, one seeded stream per
//! response), the distinct ones are compared by the same model as a meta-judge in a round
//! robin (every two in both orders, through the meta-judge template — the world's
//! [`format::judge_meta`](crate::world::format::judge_meta) by default — with score-grm's
//! `verdicts` read as its pairwise judge reads them), and the strongest and the weakest
//! judgment form the judge pair. A judgment is the score token, the pointwise template's
//! `close` text, then EOS ([`judge::answer_ids`]): the judge's whole answer.

use std::collections::BTreeMap;

use candle_core::{D, Tensor};

use super::grm::{MetaJudgeParams, PointwiseJudgment, Responses, ScoreGrmParams};
use super::judge::{self, JudgeTemplate};
use crate::loss::meta_judge::{Verdicts, judge_pair};
use crate::model::score::verdict_probs_vec;
use crate::model::{Adapters, Model};
use crate::tables::judge_pairs::JudgePairRow;
use crate::world::rng::RowRng;

/// The model and its two judge templates: the pointwise judge's and the meta-judge's.
pub struct Judges<'a> {
    pub model: &'a Model,
    pub pointwise: &'a JudgeTemplate,
    pub meta: &'a JudgeTemplate,
}

/// The random stream of the judgment draws.
const STREAM: &str = "score_grm.meta";

/// The judge pair of every response that has one (response-id order), from the pointwise
/// judge's own reading of each response (`judged`: score-grm's [`PointwiseJudgment`]s).
pub fn judge_pairs(
    judges: &Judges,
    p: &ScoreGrmParams,
    meta: &MetaJudgeParams,
    responses: &Responses,
    judged: &BTreeMap<i64, PointwiseJudgment>,
    seed: u64,
) -> anyhow::Result<Vec<JudgePairRow>> {
    let text = &judges.model.text;
    let score_ids: Vec<u32> = p
        .scores
        .iter()
        .map(|s| judge::single_token(text, s, "score string"))
        .collect::<anyhow::Result<_>>()?;
    let judged: Vec<&PointwiseJudgment> = responses
        .keys()
        .map(|id| {
            judged
                .get(id)
                .ok_or_else(|| anyhow::anyhow!("response {id} has no pointwise judgment"))
        })
        .collect::<anyhow::Result<_>>()?;
    let drawn = draw(meta, &judged, responses, seed)?;
    let verdicts = meta_verdicts(judges, p, responses, &drawn)?;
    let answer = judges.pointwise.pointwise("", "")?;
    let mut rows = Vec::new();
    for ((r, values), j) in responses.values().zip(&drawn).zip(judged) {
        let Some(((c, wc), (l, wl))) = judge_pair(values, &verdicts[&r.response_id]) else {
            continue;
        };
        let ids = |v: u32| judge::answer_ids(text, &answer, score_ids[v as usize]);
        rows.push(JudgePairRow {
            response_id: r.response_id,
            prompt_id: r.prompt_id,
            judgments: values.len() as i32,
            chosen: p.scores[c as usize].clone(),
            rejected: p.scores[l as usize].clone(),
            chosen_strength: wc,
            rejected_strength: wl,
            judge_ids: j.prompt.clone(),
            chosen_ids: ids(c)?,
            rejected_ids: ids(l)?,
        });
    }
    Ok(rows)
}

/// Per response, the distinct judgments drawn (indices into `p.scores`, ascending), from
/// `softmax(logits / temperature)`.
fn draw(
    meta: &MetaJudgeParams,
    judged: &[&PointwiseJudgment],
    responses: &Responses,
    seed: u64,
) -> anyhow::Result<Vec<Vec<u32>>> {
    let dev = candle_core::Device::Cpu;
    let mut out = Vec::with_capacity(judged.len());
    for (&id, j) in responses.keys().zip(judged) {
        let logits = Tensor::new(j.logits.as_slice(), &dev)?;
        let dist = candle_nn::ops::softmax(&(logits / meta.temperature)?, D::Minus1)?;
        let dist = dist.to_vec1::<f32>()?;
        let mut rng = RowRng::new(seed, STREAM, id as u64);
        let mut values: Vec<u32> = (0..meta.judgments)
            .map(|_| sample(&dist, rng.unit()))
            .collect();
        values.sort_unstable();
        values.dedup();
        out.push(values);
    }
    Ok(out)
}

/// The index `u` falls on in the cumulative distribution `dist`.
fn sample(dist: &[f32], u: f64) -> u32 {
    let mut acc = 0.0;
    for (i, &q) in dist.iter().enumerate() {
        acc += f64::from(q);
        if u < acc {
            return i as u32;
        }
    }
    dist.len() as u32 - 1
}

/// The meta-judge's `P(A)` for every ordered pair of each response's distinct judgments.
fn meta_verdicts(
    judges: &Judges,
    p: &ScoreGrmParams,
    responses: &Responses,
    drawn: &[Vec<u32>],
) -> anyhow::Result<BTreeMap<i64, Verdicts>> {
    let text = &judges.model.text;
    let a = judge::single_token(text, &p.verdicts[0], "verdict")?;
    let b = judge::single_token(text, &p.verdicts[1], "verdict")?;
    let mut shown = Vec::new();
    let mut owners = Vec::new();
    for (r, values) in responses.values().zip(drawn) {
        for &x in values {
            for &y in values.iter().filter(|&&y| y != x) {
                let (sx, sy) = (&p.scores[x as usize], &p.scores[y as usize]);
                let t = judges.meta.meta(&r.prompt, &r.text, sx, sy)?;
                if shown.is_empty() {
                    judge::check_seam(text, &t, &p.verdicts[0], a)?;
                    judge::check_seam(text, &t, &p.verdicts[1], b)?;
                }
                shown.push(judge::encode(text, &t)?);
                owners.push((r.response_id, x, y));
            }
        }
    }
    let mut out: BTreeMap<i64, Verdicts> =
        responses.keys().map(|&id| (id, Verdicts::new())).collect();
    if shown.is_empty() {
        return Ok(out);
    }
    let pad = text.pad_id();
    let probs = verdict_probs_vec(
        &judges.model.decoder,
        &shown,
        (a, b),
        pad,
        Adapters::On,
        p.batch_size,
    )?;
    for ((id, x, y), pa) in owners.into_iter().zip(probs) {
        out.get_mut(&id)
            .expect("every owner is a response")
            .insert((x, y), f64::from(pa[0]));
    }
    Ok(out)
}
