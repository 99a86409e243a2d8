//! Scoring with the model: the quantities the reward models and training need.
//!
//! - [`response_logprobs`]: for items `(prompt ids, response ids)` the sum over response
//!   tokens of `log p(token | everything before it)`, shape `(b,)`. The prompt is masked;
//!   an EOS the caller appended to the response counts like any response token. This is the
//!   DPO / implicit-reward quantity. Right padding; batched = one by one.
//! - [`verdict_probs`]: for judge prompts, `softmax(l_A, l_B)` of the logits of two given
//!   token ids at each prompt's last position, shape `(b, 2)`. The LLM-as-a-judge quantity.
//!
//! Both return differentiable tensors (graphs through any `Var`s); the `_vec` versions run
//! in chunks and return plain numbers.

use candle_core::{D, DType, Tensor};

pub use super::batch::Pair;
use super::batch::{Batch, Padding};
use super::decoder::Decoder;
use super::linear::Adapters;

/// Every item's prompt has a token (the first response token is predicted from it).
fn check_prompts(items: &[Pair]) -> anyhow::Result<()> {
    if let Some(i) = items.iter().position(|p| p.prompt.is_empty()) {
        anyhow::bail!(crate::user_err!(
            "item {i}: the prompt has no tokens, so the first response token cannot be scored"
        ));
    }
    Ok(())
}

/// A user error unless `dec` has a language-model head (a reward model has no token
/// log-probs).
pub fn check_language_model(dec: &Decoder) -> anyhow::Result<()> {
    if dec.config().head != super::config::Head::Lm {
        anyhow::bail!(crate::user_err!(
            "this checkpoint is a reward model (a score head): it has no token log-probs"
        ));
    }
    Ok(())
}

/// Sum of response-token log-probs per item, `(b,)` f32.
pub fn response_logprobs(
    dec: &Decoder,
    items: &[Pair],
    pad_id: u32,
    adapters: Adapters,
) -> anyhow::Result<Tensor> {
    check_prompts(items)?;
    check_language_model(dec)?;
    let seqs: Vec<Vec<u32>> = items
        .iter()
        .map(|p| [p.prompt.as_slice(), &p.response].concat())
        .collect();
    let batch = Batch::padded(&seqs, pad_id, Padding::Right)?;
    let (b, t) = (batch.batch_size(), batch.seq_len());
    // Only positions that predict a response token get logits: (n, vocab), not (b, t, vocab).
    let (mut rows, mut targets, mut owner) = (Vec::new(), Vec::new(), Vec::new());
    for (r, (item, seq)) in items.iter().zip(&seqs).enumerate() {
        // Position i predicts token i + 1; response tokens are at prompt.len()..seq.len().
        for i in item.prompt.len() - 1..seq.len() - 1 {
            rows.push((r * t + i) as u32);
            targets.push(seq[i + 1]);
            owner.push(r);
        }
    }
    let dev = dec.device();
    let n = rows.len();
    if n == 0 {
        return Ok(Tensor::zeros(b, DType::F32, dev)?);
    }
    let hidden = dec.hidden(&batch, None, adapters)?;
    let h = hidden.dim(2)?;
    let picked_hidden = hidden
        .reshape((b * t, h))?
        .index_select(&Tensor::from_vec(rows, n, dev)?, 0)?;
    let logp = candle_nn::ops::log_softmax(&dec.logits(&picked_hidden, adapters)?, D::Minus1)?;
    let token_logp = logp.gather(&Tensor::from_vec(targets, (n, 1), dev)?, 1)?;
    // Sum each item's tokens: a (b, n) 0/1 matrix times the (n, 1) log-probs.
    let mut sum_matrix = vec![0f32; b * n];
    for (j, r) in owner.into_iter().enumerate() {
        sum_matrix[r * n + j] = 1.0;
    }
    let sum_matrix = Tensor::from_vec(sum_matrix, (b, n), dev)?;
    Ok(sum_matrix.matmul(&token_logp)?.squeeze(1)?)
}

/// The logits of `tokens` at each prompt's last position, `(b, tokens.len())` f32,
/// differentiable: the quantity every judge reads (verdict letters, score tokens).
/// Prompts are right-padded; only the last positions go through the head.
pub fn token_logits_at_last(
    dec: &Decoder,
    prompts: &[Vec<u32>],
    tokens: &[u32],
    pad_id: u32,
    adapters: Adapters,
) -> anyhow::Result<Tensor> {
    let batch = Batch::padded(prompts, pad_id, Padding::Right)?;
    let (b, t) = (batch.batch_size(), batch.seq_len());
    let dev = dec.device();
    let hidden = dec.hidden(&batch, None, adapters)?;
    let h = hidden.dim(2)?;
    let last: Vec<u32> = batch
        .lengths()
        .iter()
        .enumerate()
        .map(|(r, &n)| (r * t + n - 1) as u32)
        .collect();
    let at_last = hidden
        .reshape((b * t, h))?
        .index_select(&Tensor::from_vec(last, b, dev)?, 0)?;
    let logits = dec.logits(&at_last, adapters)?;
    Ok(logits.index_select(&Tensor::new(tokens, dev)?, 1)?)
}

/// `softmax(l_a, l_b)` at each prompt's last position, `(b, 2)` f32.
pub fn verdict_probs(
    dec: &Decoder,
    prompts: &[Vec<u32>],
    (a, b_tok): (u32, u32),
    pad_id: u32,
    adapters: Adapters,
) -> anyhow::Result<Tensor> {
    check_verdict_tokens(dec, (a, b_tok))?;
    let pair = token_logits_at_last(dec, prompts, &[a, b_tok], pad_id, adapters)?;
    Ok(candle_nn::ops::softmax(&pair, D::Minus1)?)
}

fn check_verdict_tokens(dec: &Decoder, (a, b): (u32, u32)) -> anyhow::Result<()> {
    check_judge_tokens(dec.config().vocab_size, &[a, b])
}

/// The judge's verdict or score token ids are in the model's vocabulary (a user error
/// otherwise: they were encoded with another model's tokenizer).
pub fn check_judge_tokens(vocab: usize, tokens: &[u32]) -> anyhow::Result<()> {
    if let Some(t) = tokens.iter().find(|&&t| t as usize >= vocab) {
        anyhow::bail!(crate::user_err!(
            "judge token id {t} is outside the model's vocabulary ({vocab} tokens): the verdict \
             or score tokens were encoded with another tokenizer; rerun score-grm with this model"
        ));
    }
    Ok(())
}

/// [`response_logprobs`] as numbers, through the fast path ([`super::fast`]) when it applies,
/// else the candle path in chunks of `chunk` items (the fast path packs its own groups).
pub fn response_logprobs_vec(
    dec: &Decoder,
    items: &[Pair],
    pad_id: u32,
    adapters: Adapters,
    chunk: usize,
) -> anyhow::Result<Vec<f32>> {
    check_prompts(items)?;
    if let Some(result) = super::fast::response_logprobs(dec, items, adapters) {
        return result;
    }
    in_chunks(items, chunk, |part| {
        Ok(response_logprobs(dec, part, pad_id, adapters)?
            .detach()
            .to_vec1::<f32>()?)
    })
}

/// `f` over `items` in chunks of `chunk` (at least one item each), results concatenated.
pub fn in_chunks<I, O>(
    items: &[I],
    chunk: usize,
    mut f: impl FnMut(&[I]) -> anyhow::Result<Vec<O>>,
) -> anyhow::Result<Vec<O>> {
    let mut out = Vec::with_capacity(items.len());
    for part in items.chunks(chunk.max(1)) {
        out.extend(f(part)?);
    }
    Ok(out)
}

/// [`verdict_probs`] as `[p_a, p_b]` numbers, through the fast path ([`super::fast`]) when
/// it applies, else the candle path in chunks of `chunk` prompts.
pub fn verdict_probs_vec(
    dec: &Decoder,
    prompts: &[Vec<u32>],
    tokens: (u32, u32),
    pad_id: u32,
    adapters: Adapters,
    chunk: usize,
) -> anyhow::Result<Vec<[f32; 2]>> {
    check_verdict_tokens(dec, tokens)?;
    if let Some(result) = super::fast::verdict_probs(dec, prompts, tokens, adapters) {
        return result;
    }
    in_chunks(prompts, chunk, |part| {
        let rows = verdict_probs(dec, part, tokens, pad_id, adapters)?
            .detach()
            .to_dtype(DType::F32)?;
        Ok(rows
            .to_vec2::<f32>()?
            .into_iter()
            .map(|r| [r[0], r[1]])
            .collect())
    })
}
