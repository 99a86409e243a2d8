//! What eval asks a model: responses to held-out prompts (greedy or sampled
//! with per-row seeds), response log-probs (the IRM), and the judge's
//! verdicts on gold pairs (pairwise in both orders, and pointwise).
//!
//! Every function takes items in a fixed order and returns one result per
//! item in that order; batching (`chunk`) never changes a number, and a
//! sampled row's tokens depend only on its prompt, its seed and the model.

use candle_core::{D, DType};

use crate::model::generate::{GenerateParams, Sampler, generate};
use crate::model::reward::rewards_vec;
use crate::model::score::{Pair, response_logprobs_vec, token_logits_at_last, verdict_probs_vec};
use crate::model::{Adapters, Message, Model};
use crate::world::{format, gold};

/// How responses are decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    Greedy,
    Sampled { temperature: f64, top_p: f64 },
}

impl Decoding {
    /// The name used in tables and metric names.
    pub fn name(self) -> &'static str {
        match self {
            Decoding::Greedy => "greedy",
            Decoding::Sampled { .. } => "sampled",
        }
    }
}

/// One generated response, gold-scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub prompt_id: i64,
    pub sample: u32,
    pub text: String,
    /// Generated tokens, the stop token excluded.
    pub length: usize,
    /// Whether generation ended on a stop token.
    pub finished: bool,
    pub gold: f64,
}

/// The seed of sample `sample` of prompt `prompt_id` (splitmix64 over the
/// three numbers: fixed across iterations and models, so every model is
/// measured with the same random numbers).
pub fn row_seed(seed: u64, prompt_id: i64, sample: u32) -> u64 {
    let mut x = seed;
    for v in [prompt_id as u64, u64::from(sample)] {
        x = splitmix(x ^ splitmix(v));
    }
    x
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `samples` responses per prompt (prompt-major), gold-scored.
pub fn respond(
    model: &Model,
    prompts: &[(i64, String)],
    decoding: Decoding,
    samples: u32,
    (max_new_tokens, seed, chunk): (usize, u64, usize),
) -> anyhow::Result<Vec<Response>> {
    let text = &model.text;
    let sampler = match decoding {
        Decoding::Greedy => Sampler::Greedy,
        Decoding::Sampled { temperature, top_p } => Sampler::Sample { temperature, top_p },
    };
    let params = GenerateParams::for_text(text, max_new_tokens, sampler);
    let mut rows = Vec::new();
    for (id, prompt) in prompts {
        for sample in 0..samples {
            rows.push((*id, prompt.as_str(), sample));
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for part in rows.chunks(chunk.max(1)) {
        let ids: Vec<Vec<u32>> = part
            .iter()
            .map(|(_, p, _)| text.encode_prompt(p))
            .collect::<Result<_, _>>()?;
        let seeds: Vec<u64> = part
            .iter()
            .map(|(id, _, s)| row_seed(seed, *id, *s))
            .collect();
        let generated = generate(&model.decoder, &ids, &seeds, &params, Adapters::On)?;
        for ((id, prompt, sample), g) in part.iter().zip(generated) {
            let body = if g.stopped {
                &g.token_ids[..g.token_ids.len() - 1]
            } else {
                &g.token_ids[..]
            };
            let response = text.decode(body, true)?;
            out.push(Response {
                prompt_id: *id,
                sample: *sample,
                gold: gold::score(prompt, &response)?,
                length: body.len(),
                finished: g.stopped,
                text: response,
            });
        }
    }
    Ok(out)
}

/// `logπ(response | prompt)` (EOS appended) for each `(prompt, response)`.
pub fn logprobs(model: &Model, items: &[(&str, &str)], chunk: usize) -> anyhow::Result<Vec<f64>> {
    let pairs: Vec<Pair> = items
        .iter()
        .map(|(p, r)| {
            Ok(Pair {
                prompt: model.text.encode_prompt(p)?,
                response: model.text.encode_response(r, true)?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let pad = model.text.pad_id();
    let lp = response_logprobs_vec(&model.decoder, &pairs, pad, Adapters::On, chunk)?;
    Ok(lp.into_iter().map(f64::from).collect())
}

/// `r(x, y)` of a reward model for each `(prompt, response)` (EOS appended), the prompt as
/// generate and train-rm encode it (the chat template).
pub fn rewards(rm: &Model, items: &[(&str, &str)], chunk: usize) -> anyhow::Result<Vec<f64>> {
    let seqs: Vec<Vec<u32>> = items
        .iter()
        .map(|(p, r)| {
            let prompt = rm
                .text
                .encode_chat_prompt(&[Message::user(p.to_string())])?;
            Ok([prompt, rm.text.encode_response(r, true)?].concat())
        })
        .collect::<anyhow::Result<_>>()?;
    let r = rewards_vec(&rm.decoder, &seqs, rm.text.pad_id(), Adapters::On, chunk)?;
    Ok(r.into_iter().map(f64::from).collect())
}

/// The id of a judge token, or a user error naming it.
fn token_id(model: &Model, token: &str) -> anyhow::Result<u32> {
    model.text.tokenizer().token_to_id(token).ok_or_else(|| {
        crate::user_err!(
            "the judge token {token:?} is not a single token of the model's vocabulary; eval \
             needs the built-in world's judge formats"
        )
        .into()
    })
}

/// `P(A)` of the pairwise judge for each `(prompt, a, b)`.
pub fn pairwise(
    model: &Model,
    items: &[(&str, &str, &str)],
    chunk: usize,
) -> anyhow::Result<Vec<f64>> {
    let tokens = (
        token_id(model, format::VERDICT_A)?,
        token_id(model, format::VERDICT_B)?,
    );
    let prompts: Vec<Vec<u32>> = items
        .iter()
        .map(|(p, a, b)| model.text.encode_prompt(&format::judge_pairwise(p, a, b)))
        .collect::<Result<_, _>>()?;
    let pad = model.text.pad_id();
    let probs = verdict_probs_vec(&model.decoder, &prompts, tokens, pad, Adapters::On, chunk)?;
    Ok(probs.into_iter().map(|[a, _]| f64::from(a)).collect())
}

/// The pointwise judge's expected score level (1..=`levels`) for each
/// `(prompt, response)`: the softmax over the score tokens at the answer position.
pub fn pointwise(
    model: &Model,
    items: &[(&str, &str)],
    levels: u32,
    chunk: usize,
) -> anyhow::Result<Vec<f64>> {
    let ids: Vec<u32> = format::score_tokens(levels)
        .iter()
        .map(|t| token_id(model, t))
        .collect::<Result<_, _>>()?;
    let prompts: Vec<Vec<u32>> = items
        .iter()
        .map(|(p, r)| model.text.encode_prompt(&format::judge_pointwise(p, r)))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(items.len());
    for part in prompts.chunks(chunk.max(1)) {
        for row in token_probs(model, part, &ids)? {
            out.push(super::metrics::expected_level(&row));
        }
    }
    Ok(out)
}

/// `softmax` over the logits of `ids` at each prompt's last position.
fn token_probs(model: &Model, prompts: &[Vec<u32>], ids: &[u32]) -> anyhow::Result<Vec<Vec<f64>>> {
    let dec = &model.decoder;
    let picked = token_logits_at_last(dec, prompts, ids, model.text.pad_id(), Adapters::On)?;
    let probs = candle_nn::ops::softmax(&picked, D::Minus1)?
        .detach()
        .to_dtype(DType::F64)?;
    Ok(probs.to_vec2::<f64>()?)
}
