//! The fast inference path: scoring, judging and sampling without candle's tensor graph.
//!
//! The differentiable path ([`super::decoder::Decoder`] and candle ops) builds every
//! intermediate as a fresh tensor, pads every batch to its longest row, runs element-wise
//! ops one at a time and, at the sizes scir runs, spends more time on that than on the
//! matmuls (`BENCHMARKS.md`). Inference needs no graph, so this path computes the same
//! forward pass on plain `f32` slices:
//!
//! - **no padding**: sequences are packed back to back ([`forward`]); attention runs per
//!   sequence over its own KV cache slot;
//! - **fused, vectorised element-wise kernels** ([`simd`]: RMSNorm, SwiGLU, softmax,
//!   log-sum-exp), runtime-dispatched to AVX-512 / AVX2;
//! - **the weights in place** ([`weights`]: candle's storage, read-locked per call);
//! - **parallel over independent groups** (rayon), each group single-threaded with reused
//!   buffers, so no barrier per op and no allocator churn per op.
//!
//! Results depend only on the inputs and the weights — not on the thread count, nor on which
//! other rows share a call (a row alone gives the same bits as in a batch). Versus the candle
//! path they differ by summation order and the `exp` polynomial: log-probs agree to ~1e-5
//! relative and both match transformers within the parity tolerance (tests).
//!
//! Used automatically by [`super::score::response_logprobs_vec`],
//! [`super::score::verdict_probs_vec`] and [`super::generate::generate`] whenever the
//! decoder's weights (and the LoRA adapters taking part) are f32 on the CPU; otherwise those
//! fall back to the candle path (kept as the reference: `*_reference` functions). Training
//! (`sft`, `train`, `train-rm`, through [`super::trainer::StepOutputs`]), LoRA included,
//! records the same forward pass and runs a hand-written backward ([`train`]).
//!
//! Tolerances versus the candle path (tests in `tests/model/fast.rs`): summed log-probs and
//! verdict probabilities within 2e-5 (relative, `|a − b| / (1 + |b|)`), the same greedy
//! tokens, every weight gradient within 1e-4 of that tensor's largest gradient; parity with
//! transformers holds at the fixtures' tolerance (`tests/model/parity.rs`).

pub mod forward;
pub mod matmul;
pub mod train;
pub mod weights;

use rayon::prelude::*;

use self::forward::{KvCache, RopeTable, Scratch, Span};
use self::matmul::{Into, matmul_wt, with_threads};
use self::weights::Weights;
use super::batch::{Batch, Pair};
use super::decoder::Decoder;
use super::linear::Adapters;
use super::sampling::{GenerateParams, Generated, pick, start_rows};
use super::simd;

/// Tokens per packed group when scoring: large enough for efficient matmuls, small enough
/// that a group's activations stay near the caches and the threads balance.
const GROUP_TOKENS: usize = 2048;
/// Most rows per generation group (each group decodes its rows in lock-step).
const GEN_GROUP_ROWS: usize = 64;

/// Run `f` with the decoder's weights, or `None` when the fast path does not apply.
fn with_weights<T>(
    dec: &Decoder,
    adapters: Adapters,
    f: impl FnOnce(&Weights) -> anyhow::Result<T>,
) -> Option<anyhow::Result<T>> {
    let locked = weights::lock(dec, adapters)?;
    let w = Weights::new(dec, &locked);
    Some(f(&w))
}

/// The per-sequence errors of the candle path: an empty sequence, an id outside the vocabulary.
fn check_ids(w: &Weights, seqs: &[Vec<u32>]) -> anyhow::Result<()> {
    if !seqs.is_empty() {
        Batch::check(seqs)?;
    }
    let vocab = w.cfg.vocab_size;
    for (i, s) in seqs.iter().enumerate() {
        if let Some(&id) = s.iter().find(|&&id| id as usize >= vocab) {
            anyhow::bail!(
                "sequence {i}: token id {id} is outside the model's vocabulary ({vocab} tokens): \
                 the tokenizer and the checkpoint's config.json disagree"
            );
        }
    }
    Ok(())
}

/// Consecutive runs of `seqs` of at most [`GROUP_TOKENS`] tokens, and at most an even share
/// of the tokens per thread (so a small call still uses every thread). Which rows share a
/// group does not change any row's result.
fn groups(seqs: &[Vec<u32>]) -> Vec<std::ops::Range<usize>> {
    let total: usize = seqs.iter().map(Vec::len).sum();
    let budget = total
        .div_ceil(rayon::current_num_threads().max(1))
        .min(GROUP_TOKENS);
    runs_within(seqs, budget)
}

/// Threads each of `groups` groups running at once lends its matrix products: the pool's
/// spare threads when there are fewer groups than threads (see [`matmul::with_threads`]).
fn threads_per_group(groups: usize) -> usize {
    (rayon::current_num_threads() / groups.max(1)).max(1)
}

/// Consecutive runs of `seqs` of at most `budget` tokens (at least one sequence each).
fn runs_within(seqs: &[Vec<u32>], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (i, s) in seqs.iter().enumerate() {
        if i > start && tokens + s.len() > budget {
            out.push(start..i);
            (start, tokens) = (i, 0);
        }
        tokens += s.len();
    }
    if start < seqs.len() {
        out.push(start..seqs.len());
    }
    out
}

/// Pack `seqs` as new sequences (no past): ids and spans, slot `i` for sequence `i`.
fn pack(seqs: &[Vec<u32>]) -> (Vec<u32>, Vec<Span>) {
    let mut ids = Vec::new();
    let mut spans = Vec::with_capacity(seqs.len());
    for (slot, s) in seqs.iter().enumerate() {
        spans.push(Span {
            start: ids.len(),
            len: s.len(),
            past: 0,
            slot,
            copies: None,
        });
        ids.extend_from_slice(s);
    }
    (ids, spans)
}

/// A forward pass of `seqs` from scratch: what it packed and built, and the final hidden
/// states `(tokens, hidden)`.
pub(super) struct Fresh {
    pub spans: Vec<Span>,
    pub rope: RopeTable,
    pub cache: KvCache,
    pub hidden: Vec<f32>,
}

/// Run `seqs` from scratch (recording into `tape` when given).
pub(super) fn run_fresh(w: &Weights, seqs: &[Vec<u32>], tape: Option<&mut forward::Tape>) -> Fresh {
    let (ids, spans) = pack(seqs);
    let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
    run_packed(w, &ids, spans, longest, tape)
}

/// A forward pass of packed rows from scratch (one cache slot per span, `positions` per
/// slot).
pub(super) fn run_packed(
    w: &Weights,
    ids: &[u32],
    spans: Vec<Span>,
    positions: usize,
    tape: Option<&mut forward::Tape>,
) -> Fresh {
    let rope = RopeTable::new(w, positions);
    let mut cache = KvCache::new(w, spans.len(), positions);
    let mut scratch = Scratch::default();
    let hidden = forward::hidden(w, ids, &spans, &rope, &mut cache, &mut scratch, tape);
    Fresh {
        spans,
        rope,
        cache,
        hidden,
    }
}

/// For sequences packed back to back (the first `prompt_len` tokens of each are its prompt):
/// the rows that predict a response token (row `i` predicts token `i + 1`), those tokens, and
/// the sequence each row belongs to.
struct ResponseRows {
    rows: Vec<usize>,
    targets: Vec<u32>,
    owner: Vec<usize>,
}

fn response_rows(seqs: &[Vec<u32>], prompt_lens: impl Iterator<Item = usize>) -> ResponseRows {
    let mut out = ResponseRows {
        rows: Vec::new(),
        targets: Vec::new(),
        owner: Vec::new(),
    };
    let mut start = 0;
    for (r, (seq, plen)) in seqs.iter().zip(prompt_lens).enumerate() {
        for i in plen - 1..seq.len() - 1 {
            out.rows.push(start + i);
            out.targets.push(seq[i + 1]);
            out.owner.push(r);
        }
        start += seq.len();
    }
    out
}

/// Rows `rows` of `hidden` `(·, h)`, gathered into one contiguous `(rows, h)` matrix.
fn gather_rows(hidden: &[f32], rows: &[usize], h: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * h);
    for &r in rows {
        out.extend_from_slice(&hidden[r * h..(r + 1) * h]);
    }
    out
}

/// The vocabulary head's logits `(n, vocab)` of `n` contiguous hidden rows.
fn vocab_logits(w: &Weights, rows: &[f32]) -> Vec<f32> {
    let (h, vocab) = (w.cfg.hidden_size, w.cfg.vocab_size);
    let n = rows.len() / h;
    let mut logits = vec![0f32; n * vocab];
    matmul_wt(
        rows,
        h,
        w.lm_head,
        &mut logits,
        vocab,
        (n, vocab, h),
        Into::Overwrite,
    );
    logits
}

/// Per sequence, the sum of its rows' target log-probs, from the rows' `logits`.
fn summed_logprobs(logits: &[f32], vocab: usize, rr: &ResponseRows, seqs: usize) -> Vec<f32> {
    let mut sums = vec![0f32; seqs];
    for ((row, &t), &o) in logits.chunks_exact(vocab).zip(&rr.targets).zip(&rr.owner) {
        sums[o] += row[t as usize] - simd::log_sum_exp(row);
    }
    sums
}

/// Sum of response-token log-probs per item (see [`super::score::response_logprobs`]);
/// `None` when the fast path does not apply.
pub fn response_logprobs(
    dec: &Decoder,
    items: &[Pair],
    adapters: Adapters,
) -> Option<anyhow::Result<Vec<f32>>> {
    with_weights(dec, adapters, |w| {
        let seqs: Vec<Vec<u32>> = items
            .iter()
            .map(|p| [p.prompt.as_slice(), &p.response].concat())
            .collect();
        check_ids(w, &seqs)?;
        let groups = groups(&seqs);
        let lent = threads_per_group(groups.len());
        let parts: Vec<Vec<f32>> = groups
            .into_par_iter()
            .map(|r| with_threads(lent, || score_group(w, &items[r.clone()], &seqs[r])))
            .collect();
        Ok(parts.concat())
    })
}

fn score_group(w: &Weights, items: &[Pair], seqs: &[Vec<u32>]) -> Vec<f32> {
    let hidden = run_fresh(w, seqs, None).hidden;
    let rr = response_rows(seqs, items.iter().map(|p| p.prompt.len()));
    let logits = vocab_logits(w, &gather_rows(&hidden, &rr.rows, w.cfg.hidden_size));
    summed_logprobs(&logits, w.cfg.vocab_size, &rr, items.len())
}

/// `softmax(l_a, l_b)` at each prompt's last position (see
/// [`super::score::verdict_probs`]); `None` when the fast path does not apply.
pub fn verdict_probs(
    dec: &Decoder,
    prompts: &[Vec<u32>],
    (a, b): (u32, u32),
    adapters: Adapters,
) -> Option<anyhow::Result<Vec<[f32; 2]>>> {
    with_weights(dec, adapters, |w| {
        check_ids(w, prompts)?;
        let h = w.cfg.hidden_size;
        let head = |t: u32| &w.lm_head[t as usize * h..(t as usize + 1) * h];
        let groups = groups(prompts);
        let lent = threads_per_group(groups.len());
        let parts: Vec<Vec<[f32; 2]>> = groups
            .into_par_iter()
            .map(|r| {
                let Fresh { hidden, spans, .. } =
                    with_threads(lent, || run_fresh(w, &prompts[r], None));
                spans
                    .iter()
                    .map(|sp| {
                        let row = sp.start + sp.len - 1;
                        let x = &hidden[row * h..(row + 1) * h];
                        softmax2(simd::dot(x, head(a)), simd::dot(x, head(b)))
                    })
                    .collect()
            })
            .collect();
        Ok(parts.concat())
    })
}

/// `softmax([a, b])` as candle computes it (`exp(x − max) / Σ`).
fn softmax2(a: f32, b: f32) -> [f32; 2] {
    let m = a.max(b);
    let (ea, eb) = ((a - m).exp(), (b - m).exp());
    let s = ea + eb;
    [ea / s, eb / s]
}

/// Batched generation (see [`super::generate::generate`]); `None` when the fast path does
/// not apply. Rows are decoded in groups of at most [`GEN_GROUP_ROWS`], in parallel; a row's
/// tokens do not depend on its group.
pub fn generate(
    dec: &Decoder,
    prompts: &[Vec<u32>],
    seeds: &[u64],
    params: &GenerateParams,
    adapters: Adapters,
) -> Option<anyhow::Result<Vec<Generated>>> {
    with_weights(dec, adapters, |w| {
        check_ids(w, prompts)?;
        let threads = rayon::current_num_threads().max(1);
        let per_group = prompts.len().div_ceil(threads).clamp(1, GEN_GROUP_ROWS);
        let lent = threads_per_group(prompts.len().div_ceil(per_group));
        let parts: Vec<Vec<Generated>> = prompts
            .par_chunks(per_group)
            .zip(seeds.par_chunks(per_group))
            .map(|(p, s)| with_threads(lent, || generate_group(w, p, s, params)))
            .collect();
        Ok(parts.concat())
    })
}

fn generate_group(
    w: &Weights,
    prompts: &[Vec<u32>],
    seeds: &[u64],
    params: &GenerateParams,
) -> Vec<Generated> {
    let (h, vocab) = (w.cfg.hidden_size, w.cfg.vocab_size);
    let (mut rngs, mut out) = start_rows(seeds);
    if params.max_new_tokens == 0 {
        return out;
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let capacity = longest + params.max_new_tokens;
    let rope = RopeTable::new(w, capacity);
    let mut cache = KvCache::new(w, prompts.len(), capacity);
    let mut scratch = Scratch::default();
    let mut lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
    // Prefill: every prompt at once; then the logits at each prompt's last token.
    let (ids, mut spans) = pack(prompts);
    let mut active: Vec<usize> = (0..prompts.len()).collect();
    for step in 0..params.max_new_tokens {
        let hidden = forward::hidden(
            w,
            &ids_for(step, &ids, &out, &active),
            &spans,
            &rope,
            &mut cache,
            &mut scratch,
            None,
        );
        let last: Vec<f32> = spans
            .iter()
            .flat_map(|sp| {
                let row = sp.start + sp.len - 1;
                hidden[row * h..(row + 1) * h].iter().copied()
            })
            .collect();
        let mut logits = vec![0f32; active.len() * vocab];
        matmul_wt(
            &last,
            h,
            w.lm_head,
            &mut logits,
            vocab,
            (active.len(), vocab, h),
            Into::Overwrite,
        );
        for (&r, row) in active.iter().zip(logits.chunks_exact(vocab)) {
            let tok = pick(row, params.sampler, &mut rngs[r]);
            out[r].token_ids.push(tok);
            out[r].stopped = params.stop_ids.contains(&tok);
        }
        active.retain(|&r| !out[r].stopped);
        if active.is_empty() {
            break;
        }
        spans = active
            .iter()
            .enumerate()
            .map(|(i, &r)| Span {
                start: i,
                len: 1,
                past: lengths[r],
                slot: r,
                copies: None,
            })
            .collect();
        for &r in &active {
            lengths[r] += 1;
        }
    }
    out
}

/// The ids fed at `step`: the prompts at step 0, then each active row's last token.
fn ids_for(step: usize, prompt_ids: &[u32], out: &[Generated], active: &[usize]) -> Vec<u32> {
    if step == 0 {
        return prompt_ids.to_vec();
    }
    active
        .iter()
        .map(|&r| *out[r].token_ids.last().expect("an active row has a token"))
        .collect()
}
