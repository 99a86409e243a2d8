//! Batched generation with the KV cache: greedy or temperature + top-p sampling, a maximum
//! number of new tokens, stop at EOS, and per-row seeds.
//!
//! Prompts are left-padded so every row's next-token logits sit in the last column; the
//! prefill fills the cache, then one token per row per step. Each row draws from its own
//! ChaCha RNG seeded with the row's seed, one uniform number per sampled token, so a row's
//! tokens depend only on its prompt, its seed and the model — not on the other rows, the
//! batch size or the thread count. Ties (greedy argmax, top-p order) break towards the
//! lower token id. A row that hits a stop id keeps it as its last token and is then fed
//! padding until all rows are done (its output is not extended).

use candle_core::{IndexOp, Result, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use rand_distr::{Distribution, StandardUniform};
use rayon::prelude::*;

use super::batch::{Batch, Padding};
use super::decoder::Decoder;
use super::kv_cache::KvCache;
use super::linear::Adapters;
use crate::user_err;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// The most likely token.
    Greedy,
    /// Sample from `softmax(logits / temperature)` restricted to the top-p nucleus.
    Sample { temperature: f64, top_p: f64 },
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

/// One row's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Generated ids only (the stop id included when one was produced).
    pub token_ids: Vec<u32>,
    /// True if the row ended on a stop id (false: it ran out of `max_new_tokens`).
    pub stopped: bool,
}

/// Generate for each prompt with its seed (`prompts.len() == seeds.len()`), through the fast
/// path ([`super::fast`]) when it applies, else [`generate_reference`].
pub fn generate(
    dec: &Decoder,
    prompts: &[Vec<u32>],
    seeds: &[u64],
    params: &GenerateParams,
    adapters: Adapters,
) -> anyhow::Result<Vec<Generated>> {
    check_params(prompts, seeds, params)?;
    match super::fast::generate(dec, prompts, seeds, params, adapters) {
        Some(result) => result,
        None => generate_reference(dec, prompts, seeds, params, adapters),
    }
}

fn check_params(
    prompts: &[Vec<u32>],
    seeds: &[u64],
    params: &GenerateParams,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        prompts.len() == seeds.len(),
        "{} prompts but {} seeds",
        prompts.len(),
        seeds.len()
    );
    if let Sampler::Sample { temperature, top_p } = params.sampler {
        if !(temperature > 0.0 && temperature.is_finite()) {
            anyhow::bail!(user_err!(
                "temperature must be positive and finite (use greedy for 0), got {temperature}"
            ));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            anyhow::bail!(user_err!("top_p must be in (0, 1], got {top_p}"));
        }
    }
    Ok(())
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

/// [`generate`] on the candle path (padded batch, candle's KV cache): the reference.
pub fn generate_reference(
    dec: &Decoder,
    prompts: &[Vec<u32>],
    seeds: &[u64],
    params: &GenerateParams,
    adapters: Adapters,
) -> anyhow::Result<Vec<Generated>> {
    check_params(prompts, seeds, params)?;
    let (mut rngs, mut out) = start_rows(seeds);
    if params.max_new_tokens == 0 {
        return Ok(out);
    }
    let batch = Batch::padded(prompts, params.pad_id, Padding::Left)?;
    let capacity = batch.seq_len() + params.max_new_tokens;
    let mut cache = dec.new_cache_with_capacity(prompts.len(), capacity);
    let mut logits = next_token_logits(dec, &batch, &mut cache, adapters)?;
    for step in 0..params.max_new_tokens {
        let rows = logits.to_vec2::<f32>()?;
        // Rows are independent (each has its own RNG): pick them in parallel.
        let next: Vec<u32> = rows
            .par_iter()
            .zip(rngs.par_iter_mut())
            .zip(out.par_iter_mut())
            .map(|((row, rng), g)| {
                if g.stopped {
                    return params.pad_id;
                }
                let tok = pick(row, params.sampler, rng);
                g.token_ids.push(tok);
                g.stopped = params.stop_ids.contains(&tok);
                tok
            })
            .collect();
        if step + 1 == params.max_new_tokens || out.iter().all(|g| g.stopped) {
            break;
        }
        logits = next_token_logits(dec, &Batch::step(&next), &mut cache, adapters)?;
    }
    Ok(out)
}

/// Run `batch` through the decoder (appending to `cache`) and return the logits `(b, vocab)`
/// at its last position, detached. Left padding puts every row's last token there; only that
/// position goes through the vocabulary head (a prefill of `t` tokens would otherwise
/// compute `t − 1` rows of `vocab` logits nobody reads).
fn next_token_logits(
    dec: &Decoder,
    batch: &Batch,
    cache: &mut KvCache,
    adapters: Adapters,
) -> Result<Tensor> {
    let hidden = dec.hidden(batch, Some(cache), adapters)?;
    let t = hidden.dim(1)?;
    let last = hidden.i((.., t - 1, ..))?.contiguous()?;
    dec.logits(&last, adapters)?.detach().contiguous()
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
    crate::model::fast::simd::softmax_weights(logits, (1.0 / temperature) as f32, &mut weights);
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
