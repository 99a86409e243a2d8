//! Meta-Rewarding's judge pairs (score-grm's `meta`; [`crate::loss::meta_judge`] for the
//! rule).
//!
//! For every response: `judgments` judgments are sampled from the pointwise judge's score
//! distribution at the answer position (softmax of the score tokens' logits at
//! `temperature`, one seeded stream per response), the distinct ones are compared by the
//! same model as a meta-judge in a round robin (every two in both orders, the built-in
//! world's meta template [`format::judge_meta`], verdict `A`/`B` read as score-grm's
//! pairwise judge reads it), and the strongest and the weakest judgment form the judge
//! pair. A judgment is the score token followed by EOS, as the judge was taught to answer.
//! The meta template is the built-in world's only: a model outside it has no meta-judge
//! format yet.

use std::collections::BTreeMap;

use candle_core::D;
use serde::{Deserialize, Serialize};

use super::grm::{Responses, ScoreGrmParams};
use super::judge::{self, JudgeTemplate};
use crate::loss::meta_judge::{Verdicts, judge_pair};
use crate::model::score::verdict_probs_vec;
use crate::model::{Adapters, Message, Model};
use crate::tables::judge_pairs::JudgePairRow;
use crate::world::format;
use crate::world::rng::RowRng;

/// score-grm's `meta` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaJudgeParams {
    /// Judgments sampled per response.
    pub judgments: usize,
    /// Temperature of the judgment sampling.
    pub temperature: f64,
}

impl Default for MetaJudgeParams {
    fn default() -> Self {
        MetaJudgeParams {
            judgments: 4,
            temperature: 1.0,
        }
    }
}

/// The random stream of the judgment draws.
const STREAM: &str = "score_grm.meta";

/// The judge pair of every response that has one (response-id order).
pub fn judge_pairs(
    model: &Model,
    template: &JudgeTemplate,
    p: &ScoreGrmParams,
    meta: &MetaJudgeParams,
    responses: &Responses,
    seed: u64,
) -> anyhow::Result<Vec<JudgePairRow>> {
    let text = &model.text;
    let score_ids: Vec<u32> = p
        .scores
        .iter()
        .map(|s| judge::single_token(text, s, "score string"))
        .collect::<anyhow::Result<_>>()?;
    let prompts: Vec<Vec<u32>> = responses
        .values()
        .map(|r| judge::encode(text, &template.pointwise(&r.prompt, &r.text)?))
        .collect::<anyhow::Result<_>>()?;
    let drawn = draw(model, p, meta, &prompts, &score_ids, responses, seed)?;
    let verdicts = meta_verdicts(model, p, responses, &drawn)?;
    let eos = text
        .eos_id()
        .ok_or_else(|| anyhow::anyhow!("the judge model has no EOS token"))?;
    let mut rows = Vec::new();
    for ((r, values), prompt) in responses.values().zip(&drawn).zip(prompts) {
        let Some(((c, wc), (l, wl))) = judge_pair(values, &verdicts[&r.response_id]) else {
            continue;
        };
        let ids = |v: u32| vec![score_ids[v as usize], eos];
        rows.push(JudgePairRow {
            response_id: r.response_id,
            prompt_id: r.prompt_id,
            judgments: values.len() as i32,
            chosen: p.scores[c as usize].clone(),
            rejected: p.scores[l as usize].clone(),
            chosen_strength: wc,
            rejected_strength: wl,
            judge_ids: prompt,
            chosen_ids: ids(c),
            rejected_ids: ids(l),
        });
    }
    Ok(rows)
}

/// Per response, the distinct judgments drawn (indices into `p.scores`, ascending).
fn draw(
    model: &Model,
    p: &ScoreGrmParams,
    meta: &MetaJudgeParams,
    prompts: &[Vec<u32>],
    score_ids: &[u32],
    responses: &Responses,
    seed: u64,
) -> anyhow::Result<Vec<Vec<u32>>> {
    let pad = model.text.pad_id();
    let mut probs: Vec<Vec<f32>> = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(p.batch_size.max(1)) {
        let logits = judge::last_logits(&model.decoder, chunk, score_ids, pad)?;
        let scaled = (logits / meta.temperature)?;
        probs.extend(candle_nn::ops::softmax(&scaled, D::Minus1)?.to_vec2::<f32>()?);
    }
    Ok(responses
        .keys()
        .zip(&probs)
        .map(|(&id, dist)| {
            let mut rng = RowRng::new(seed, STREAM, id as u64);
            let mut values: Vec<u32> = (0..meta.judgments)
                .map(|_| sample(dist, rng.unit()))
                .collect();
            values.sort_unstable();
            values.dedup();
            values
        })
        .collect())
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
    model: &Model,
    p: &ScoreGrmParams,
    responses: &Responses,
    drawn: &[Vec<u32>],
) -> anyhow::Result<BTreeMap<i64, Verdicts>> {
    let text = &model.text;
    let (a, b) = (
        judge::single_token(text, format::VERDICT_A, "verdict")?,
        judge::single_token(text, format::VERDICT_B, "verdict")?,
    );
    let mut shown = Vec::new();
    let mut owners = Vec::new();
    for (r, values) in responses.values().zip(drawn) {
        for &x in values {
            for &y in values.iter().filter(|&&y| y != x) {
                let (sx, sy) = (&p.scores[x as usize], &p.scores[y as usize]);
                let meta = format::judge_meta(&r.prompt, &r.text, sx, sy);
                shown.push(text.encode_chat_prompt(&[Message::user(meta)])?);
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
        &model.decoder,
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
