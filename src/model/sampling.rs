//! Choosing tokens: the sampler settings, one row's RNG and output, and the pick of the next
//! token from a row's logits (greedy or temperature + top-p). Shared by the candle path
//! ([`super::generate`]) and the fast path ([`super::fast`]), so both pick the same token
//! from the same logits.

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use rand_distr::{Distribution, StandardUniform};

use super::tokenizer::Text;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// The most likely token.
    Greedy,
    /// Sample from `softmax(logits / temperature)` restricted to the top-p nucleus.
    Sample { temperature: f64, top_p: f64 },
}

impl Sampler {
    /// Greedy at temperature 0, else sampling at `temperature` within the top-p nucleus.
    pub fn at(temperature: f64, top_p: f64) -> Sampler {
        if temperature == 0.0 {
            Sampler::Greedy
        } else {
            Sampler::Sample { temperature, top_p }
        }
    }
}

/// Generation settings shared by every row.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    pub max_new_tokens: usize,
    pub sampler: Sampler,
    /// Generation of a row stops after any of these ids.
    pub stop_ids: Vec<u32>,
    /// Fed for left padding and for finished rows (never attended to / never returned).
    pub pad_id: u32,
}

impl GenerateParams {
    /// Settings for `text`'s model: its stop ids and padding.
    pub fn for_text(text: &Text, max_new_tokens: usize, sampler: Sampler) -> GenerateParams {
        GenerateParams {
            max_new_tokens,
            sampler,
            stop_ids: text.stop_ids().to_vec(),
            pad_id: text.pad_id(),
        }
    }
}

/// One row's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Generated ids only (the stop id included when one was produced).
    pub token_ids: Vec<u32>,
    /// True if the row ended on a stop id (false: it ran out of `max_new_tokens`).
    pub stopped: bool,
}

/// Each row's RNG (seeded with its seed) and its empty output.
pub(crate) fn start_rows(seeds: &[u64]) -> (Vec<ChaCha8Rng>, Vec<Generated>) {
    let rngs = seeds
        .iter()
        .map(|&s| ChaCha8Rng::seed_from_u64(s))
        .collect();
    let out = seeds
        .iter()
        .map(|_| Generated {
            token_ids: vec![],
            stopped: false,
        })
        .collect();
    (rngs, out)
}

/// The next token for one row.
pub fn pick(logits: &[f32], sampler: Sampler, rng: &mut ChaCha8Rng) -> u32 {
    match sampler {
        Sampler::Greedy => argmax(logits),
        Sampler::Sample { temperature, top_p } => {
            let u: f64 = StandardUniform.sample(rng);
            sample_top_p(logits, temperature, top_p, u)
        }
    }
}

/// Index of the largest logit (lowest index on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Sample with uniform `u ∈ [0, 1)` from the top-p nucleus of `softmax(logits / t)`.
///
/// The weights `exp((l − max) / t)` are computed in f32 (the fast path's vectorised `exp`).
/// With `top_p ≥ 1` the nucleus is the whole vocabulary and the draw walks it in id order
/// (one pass, no sort); below 1 the nucleus is the most likely tokens, taken in descending
/// order (ties: lower id first) until their mass reaches `top_p`, and the draw walks that
/// order.
pub fn sample_top_p(logits: &[f32], temperature: f64, top_p: f64, u: f64) -> u32 {
    let mut weights = vec![0f32; logits.len()];
    super::simd::softmax_weights(logits, (1.0 / temperature) as f32, &mut weights);
    if top_p >= 1.0 {
        return draw(&weights, 0..weights.len(), u);
    }
    let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    let mut kept = 0;
    let mut mass = 0.0;
    for &i in &order {
        mass += f64::from(weights[i]) / total;
        kept += 1;
        if mass >= top_p {
            break;
        }
    }
    draw(&weights, order[..kept].iter().copied(), u)
}

/// The token at mass `u · Σ` walking `ids` in order (the last one if rounding runs past).
fn draw(weights: &[f32], ids: impl Iterator<Item = usize> + Clone, u: f64) -> u32 {
    let total: f64 = ids.clone().map(|i| f64::from(weights[i])).sum();
    let mut target = u * total;
    let mut last = 0;
    for i in ids {
        target -= f64::from(weights[i]);
        last = i;
        if target < 0.0 {
            return i as u32;
        }
    }
    last as u32
}
