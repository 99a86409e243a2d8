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
use rayon::prelude::*;

use super::batch::{Batch, Padding};
use super::decoder::Decoder;
use super::kv_cache::KvCache;
use super::linear::Adapters;
use super::sampling::start_rows;
pub use super::sampling::{GenerateParams, Generated, Sampler, argmax, pick, sample_top_p};
use crate::user_err;

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
    if dec.config().head != super::config::Head::Lm {
        anyhow::bail!(crate::user_err!(
            "this checkpoint is a reward model (a score head, no vocabulary logits): it \
             scores responses and cannot generate them"
        ));
    }
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
