//! Training on the fast path: a recorded forward pass ([`super::forward::Tape`]) and its
//! hand-written backward pass, producing candle gradients for the optimiser.
//!
//! The losses stay in candle. [`Recorder`] runs the model's part (response log-probs, logits
//! of given tokens at each prompt's end) on the fast path and hands the loss code *leaf*
//! tensors holding those values; after `loss.backward()`, [`Recorder::weight_grads`] reads
//! the gradients of the leaves and pushes them back through the recorded passes into every
//! weight, returning a `GradStore` keyed by the weights' tensors — what candle's own backward
//! would have produced, computed without a graph of thousands of small tensors.
//!
//! Backward of each piece (rows are tokens, `·` a matrix product):
//! - linear `y = x·Wᵀ + b`: `dW += dyᵀ·x`, `db += Σ_rows dy`, `dx = dy·W`;
//! - RMSNorm `y = w·x̂`, `x̂ = x·r`: `dw += dy·x̂`, `dx = r·(g − x̂·mean(g·x̂))`, `g = w·dy`;
//! - SwiGLU `a = silu(g)·u`: `du = da·silu(g)`, `dg = da·u·σ(g)(1 + g(1 − σ(g)))`;
//! - attention per sequence and head (`P = softmax(q·kᵀ·s)` recomputed, causal):
//!   `dV += Pᵀ·dO`, `dS = P ⊙ (dO·Vᵀ − rowsum(…))`, `dq = s·dS·K`, `dK += s·dSᵀ·q`;
//! - RoPE: the inverse rotation; embeddings: rows scattered back (tied head: same buffer).
//!
//! Sequences are split into groups of at most [`TRAIN_GROUP_TOKENS`] tokens *by position
//! only*, each group's gradient computed on its own thread, and the groups' gradients summed
//! in order: results do not depend on the thread count. Tests compare every weight's
//! gradient with candle's autograd on the differentiable path.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use rayon::prelude::*;

use super::forward::{self, KvCache, RopeTable, Span, Tape};
use super::matmul::{Into, Operand, product};
use super::weights::{self, Lin, Weights};
use super::{ResponseRows, gather_rows, response_rows, summed_logprobs, vocab_logits};
use crate::model::batch::Pair;
use crate::model::decoder::Decoder;
use crate::model::linear::Adapters;
use crate::model::simd;

/// Most tokens per group (fixed, so the split does not depend on the machine).
const TRAIN_GROUP_TOKENS: usize = 1024;

/// What a recorded group's outputs are.
enum Head {
    /// Per sequence, the sum of log-probs of its response tokens.
    LogProbs {
        rr: ResponseRows,
        /// The hidden states at `rr.rows` and the logits there, kept for the backward
        /// (filled by [`head_values`]).
        picked: Vec<f32>,
        logits: Vec<f32>,
    },
    /// Per sequence, the logits of `tokens` at its last row.
    Last { tokens: Vec<u32> },
}

/// One group's recorded forward pass.
struct Group {
    spans: Vec<Span>,
    ids: Vec<u32>,
    rope: RopeTable,
    cache: KvCache,
    tape: Tape,
    /// Final normed hidden states `(rows, hidden)`.
    hidden: Vec<f32>,
    head: Head,
}

/// Recorded model outputs of one training step; see the module docs.
pub struct Recorder<'d> {
    dec: &'d Decoder,
    outputs: Vec<Recorded>,
}

/// One recorded output: its leaf tensor, its groups with their item ranges, and how many
/// values each sequence contributes to the leaf.
struct Recorded {
    leaf: Tensor,
    groups: Vec<(std::ops::Range<usize>, Group)>,
    per_seq: usize,
}

/// Gradient buffers keyed by the address of the weight slice they belong to.
#[derive(Default)]
struct Grads(HashMap<usize, Vec<f32>>);

impl Grads {
    fn of(&mut self, w: &[f32]) -> &mut [f32] {
        self.0
            .entry(w.as_ptr() as usize)
            .or_insert_with(|| vec![0.0; w.len()])
    }

    fn add(&mut self, other: Grads) {
        for (key, buf) in other.0 {
            match self.0.get_mut(&key) {
                Some(mine) => mine.iter_mut().zip(&buf).for_each(|(a, b)| *a += b),
                None => {
                    self.0.insert(key, buf);
                }
            }
        }
    }
}

impl<'d> Recorder<'d> {
    /// `None` when the fast path does not apply (see [`super::weights`]); the caller then
    /// trains through candle's autograd.
    pub fn new(dec: &'d Decoder) -> Option<Self> {
        weights::lock_any_head(dec, Adapters::On)?;
        Some(Recorder {
            dec,
            outputs: Vec::new(),
        })
    }

    /// The decoder it records.
    pub fn decoder(&self) -> &'d Decoder {
        self.dec
    }

    /// The model's vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.dec.config().vocab_size
    }

    /// Sum of response-token log-probs per item, `(b,)`, as a leaf tensor.
    pub fn response_logprobs(&mut self, items: &[Pair]) -> anyhow::Result<Tensor> {
        crate::model::score::check_language_model(self.dec)?;
        let seqs: Vec<Vec<u32>> = items
            .iter()
            .map(|p| [p.prompt.as_slice(), &p.response].concat())
            .collect();
        let prompt_lens: Vec<usize> = items.iter().map(|p| p.prompt.len()).collect();
        if let Some(i) = prompt_lens.iter().position(|&n| n == 0) {
            anyhow::bail!(crate::user_err!(
                "item {i}: the prompt has no tokens, so the first response token cannot be scored"
            ));
        }
        self.record(&seqs, items.len(), |range, seqs| Head::LogProbs {
            rr: response_rows(seqs, prompt_lens[range].iter().copied()),
            picked: Vec::new(),
            logits: Vec::new(),
        })
    }

    /// The logits of `tokens` at each prompt's last position, `(b, tokens.len())`, as a leaf.
    pub fn last_logits(&mut self, prompts: &[Vec<u32>], tokens: &[u32]) -> anyhow::Result<Tensor> {
        let outputs = self.dec.lm_head().dims().1;
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= outputs) {
            anyhow::bail!(crate::internal_err!(
                "output {t} asked of a head with {outputs} outputs"
            ));
        }
        self.record(prompts, prompts.len() * tokens.len(), |_, _| Head::Last {
            tokens: tokens.to_vec(),
        })
        .and_then(|t| Ok(t.reshape((prompts.len(), tokens.len()))?))
    }

    fn record(
        &mut self,
        seqs: &[Vec<u32>],
        outputs: usize,
        head: impl Fn(std::ops::Range<usize>, &[Vec<u32>]) -> Head + Sync,
    ) -> anyhow::Result<Tensor> {
        let locked = weights::lock_any_head(self.dec, Adapters::On)
            .ok_or_else(|| anyhow::anyhow!("internal error: the fast path stopped applying"))?;
        let w = Weights::new(self.dec, &locked);
        super::check_ids(&w, seqs)?;
        let ranges = split(seqs);
        let groups: Vec<(std::ops::Range<usize>, Group, Vec<f32>)> = ranges
            .into_par_iter()
            .map(|r| {
                let mut g = forward_group(&w, &seqs[r.clone()], head(r.clone(), &seqs[r.clone()]));
                let values = head_values(&w, &mut g);
                (r, g, values)
            })
            .collect();
        let mut values = Vec::with_capacity(outputs);
        let mut kept = Vec::with_capacity(groups.len());
        for (r, g, v) in groups {
            values.extend(v);
            kept.push((r, g));
        }
        let leaf = Var::from_vec(values, outputs, &Device::Cpu)?
            .as_tensor()
            .clone();
        self.outputs.push(Recorded {
            leaf: leaf.clone(),
            groups: kept,
            per_seq: outputs / seqs.len().max(1),
        });
        Ok(leaf)
    }

    /// The weights' gradients given `grads` (from `loss.backward()`), as a store keyed by
    /// the decoder's weight tensors.
    pub fn weight_grads(self, grads: &GradStore) -> anyhow::Result<GradStore> {
        let locked = weights::lock_any_head(self.dec, Adapters::On)
            .ok_or_else(|| anyhow::anyhow!("internal error: the fast path stopped applying"))?;
        let w = Weights::new(self.dec, &locked);
        let mut jobs = Vec::new();
        for Recorded {
            leaf,
            groups,
            per_seq,
        } in &self.outputs
        {
            let Some(g) = grads.get(leaf) else { continue };
            let upstream = g.flatten_all()?.to_vec1::<f32>()?;
            for (range, group) in groups {
                let up = upstream[range.start * per_seq..range.end * per_seq].to_vec();
                jobs.push((group, up));
            }
        }
        let parts: Vec<Grads> = jobs
            .par_iter()
            .map(|(group, up)| backward_group(&w, group, up))
            .collect();
        let mut total = Grads::default();
        for p in parts {
            total.add(p);
        }
        let mut store = GradStore::default();
        let mut seen = std::collections::HashSet::new();
        for (tensor, slice) in locked.entries() {
            if !seen.insert(tensor.id()) {
                continue;
            }
            if let Some(buf) = total.0.remove(&(slice.as_ptr() as usize)) {
                store.insert(tensor, Tensor::from_vec(buf, tensor.shape(), &Device::Cpu)?);
            }
        }
        Ok(store)
    }
}

/// Consecutive runs of about equal token counts, as few as keep each under
/// [`TRAIN_GROUP_TOKENS`] (at least one sequence each).
fn split(seqs: &[Vec<u32>]) -> Vec<std::ops::Range<usize>> {
    let total: usize = seqs.iter().map(Vec::len).sum();
    let budget = total
        .div_ceil(total.div_ceil(TRAIN_GROUP_TOKENS).max(1))
        .max(1);
    super::runs_within(seqs, budget)
}

fn forward_group(w: &Weights, seqs: &[Vec<u32>], head: Head) -> Group {
    let mut tape = Tape::default();
    let super::Fresh {
        ids,
        spans,
        rope,
        cache,
        hidden,
    } = super::run_fresh(w, seqs, Some(&mut tape));
    Group {
        spans,
        ids,
        rope,
        cache,
        tape,
        hidden,
        head,
    }
}

/// The head's outputs (and, for log-probs, the logits kept for the backward).
fn head_values(w: &Weights, g: &mut Group) -> Vec<f32> {
    let h = w.cfg.hidden_size;
    let vocab = w.cfg.vocab_size;
    match &mut g.head {
        Head::LogProbs { rr, picked, logits } => {
            *picked = gather_rows(&g.hidden, &rr.rows, h);
            *logits = vocab_logits(w, picked);
            summed_logprobs(logits, vocab, rr, g.spans.len())
        }
        Head::Last { tokens } => {
            let mut out = Vec::with_capacity(g.spans.len() * tokens.len());
            for sp in &g.spans {
                let row = sp.start + sp.len - 1;
                let x = &g.hidden[row * h..(row + 1) * h];
                for &t in tokens.iter() {
                    let t = t as usize;
                    out.push(simd::dot(x, &w.lm_head[t * h..(t + 1) * h]));
                }
            }
            out
        }
    }
}

/// Gradient of the final normed hidden states from the head, and the head's weight gradient.
fn head_backward(w: &Weights, g: &Group, up: &[f32], grads: &mut Grads) -> Vec<f32> {
    let h = w.cfg.hidden_size;
    let vocab = w.cfg.vocab_size;
    let n = g.ids.len();
    let mut dh = vec![0f32; n * h];
    match &g.head {
        Head::LogProbs { rr, picked, logits } => {
            // d logp / d logits = onehot(target) − softmax(logits), times the item's upstream.
            let mut dlogits = logits.clone();
            for ((row, &t), &o) in dlogits
                .chunks_exact_mut(vocab)
                .zip(&rr.targets)
                .zip(&rr.owner)
            {
                simd::softmax(row);
                let u = up[o];
                for v in row.iter_mut() {
                    *v *= -u;
                }
                row[t as usize] += u;
            }
            let p = rr.rows.len();
            product(
                Operand::transposed(&dlogits, vocab),
                Operand::rows(picked, h),
                grads.of(w.lm_head),
                h,
                (vocab, h, p),
                1.0,
                Into::Add,
            );
            let mut dpicked = vec![0f32; p * h];
            product(
                Operand::rows(&dlogits, vocab),
                Operand::rows(w.lm_head, h),
                &mut dpicked,
                h,
                (p, h, vocab),
                1.0,
                Into::Overwrite,
            );
            for (&r, d) in rr.rows.iter().zip(dpicked.chunks_exact(h)) {
                dh[r * h..(r + 1) * h]
                    .iter_mut()
                    .zip(d)
                    .for_each(|(a, b)| *a += b);
            }
        }
        Head::Last { tokens } => {
            let k = tokens.len();
            for (i, sp) in g.spans.iter().enumerate() {
                let row = sp.start + sp.len - 1;
                for (j, &t) in tokens.iter().enumerate() {
                    let u = up[i * k + j];
                    let t = t as usize;
                    let x = &g.hidden[row * h..(row + 1) * h];
                    simd::axpy(&mut grads.of(w.lm_head)[t * h..(t + 1) * h], u, x);
                    simd::axpy(
                        &mut dh[row * h..(row + 1) * h],
                        u,
                        &w.lm_head[t * h..(t + 1) * h],
                    );
                }
            }
        }
    }
    dh
}

fn backward_group(w: &Weights, g: &Group, up: &[f32]) -> Grads {
    let cfg = w.cfg;
    let h = cfg.hidden_size;
    let eps = cfg.rms_norm_eps as f32;
    let mut grads = Grads::default();
    let dh = head_backward(w, g, up, &mut grads);
    let mut dx = vec![0f32; dh.len()];
    norm_backward(
        &g.tape.x_final,
        w.norm,
        eps,
        &dh,
        &mut dx,
        grads.of(w.norm),
        h,
    );
    for layer in (0..w.layers.len()).rev() {
        mlp_backward(w, layer, &g.tape.layers[layer], &mut dx, &mut grads);
        attention_backward(w, layer, g, &mut dx, &mut grads);
    }
    let emb = grads.of(w.embed);
    for (&id, d) in g.ids.iter().zip(dx.chunks_exact(h)) {
        let id = id as usize;
        emb[id * h..(id + 1) * h]
            .iter_mut()
            .zip(d)
            .for_each(|(a, b)| *a += b);
    }
    grads
}

/// `dx += RMSNorm backward(dy)` row by row; `dw` accumulates.
fn norm_backward(
    x: &[f32],
    weight: &[f32],
    eps: f32,
    dy: &[f32],
    dx: &mut [f32],
    dw: &mut [f32],
    h: usize,
) {
    for ((xr, dyr), dxr) in x
        .chunks_exact(h)
        .zip(dy.chunks_exact(h))
        .zip(dx.chunks_exact_mut(h))
    {
        simd::rms_norm_backward(xr, weight, eps, dyr, dxr, dw);
    }
}

/// For `y = x·Wᵀ + b` over `n` rows: `dW += dyᵀ·x`, `db += Σ dy`, and `dx (=|+=) dy·W`.
#[allow(clippy::too_many_arguments)]
fn linear_backward(
    lin: Lin,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    (n, out, inp): (usize, usize, usize),
    into: Into,
    grads: &mut Grads,
) {
    product(
        Operand::transposed(dy, out),
        Operand::rows(x, inp),
        grads.of(lin.w),
        inp,
        (out, inp, n),
        1.0,
        Into::Add,
    );
    if let Some(b) = lin.b {
        let db = grads.of(b);
        for row in dy.chunks_exact(out) {
            db.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
    }
    product(
        Operand::rows(dy, out),
        Operand::rows(lin.w, inp),
        dx,
        inp,
        (n, inp, out),
        1.0,
        into,
    );
}

fn mlp_backward(
    w: &Weights,
    layer: usize,
    t: &forward::LayerTape,
    dx: &mut [f32],
    grads: &mut Grads,
) {
    let cfg = w.cfg;
    let l = &w.layers[layer];
    let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
    let n = dx.len() / h;
    let mut act = vec![0f32; n * inter];
    simd::silu_mul_into(&t.gate, &t.up, &mut act);
    let mut da = vec![0f32; n * inter];
    linear_backward(
        l.down,
        &act,
        dx,
        &mut da,
        (n, h, inter),
        Into::Overwrite,
        grads,
    );
    let (mut dgate, mut dup) = (act, vec![0f32; n * inter]);
    simd::silu_mul_backward(&t.gate, &t.up, &da, &mut dgate, &mut dup);
    let mut dnormed = vec![0f32; n * h];
    linear_backward(
        l.gate,
        &t.normed_mid,
        &dgate,
        &mut dnormed,
        (n, inter, h),
        Into::Overwrite,
        grads,
    );
    linear_backward(
        l.up,
        &t.normed_mid,
        &dup,
        &mut dnormed,
        (n, inter, h),
        Into::Add,
        grads,
    );
    norm_backward(
        &t.x_mid,
        l.post_norm,
        cfg.rms_norm_eps as f32,
        &dnormed,
        dx,
        grads.of(l.post_norm),
        h,
    );
}

fn attention_backward(w: &Weights, layer: usize, g: &Group, dx: &mut [f32], grads: &mut Grads) {
    let cfg = w.cfg;
    let l = &w.layers[layer];
    let t = &g.tape.layers[layer];
    let (h, d) = (cfg.hidden_size, cfg.head_dim);
    let (qw, kw) = (cfg.num_heads * d, cfg.num_kv_heads * d);
    let n = dx.len() / h;
    let mut dattn = vec![0f32; n * qw];
    linear_backward(
        l.o,
        &t.attn,
        dx,
        &mut dattn,
        (n, h, qw),
        Into::Overwrite,
        grads,
    );
    let (mut dq, mut dk, mut dv) = (vec![0f32; n * qw], vec![0f32; n * kw], vec![0f32; n * kw]);
    let (kc, vc) = (&g.cache.k[layer], &g.cache.v[layer]);
    let n_rep = cfg.num_heads / cfg.num_kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    for sp in &g.spans {
        let len = sp.len;
        let base = g.cache.offset(sp.slot, 0);
        let mut p = vec![0f32; len * len];
        let mut dp = vec![0f32; len * len];
        for head in 0..cfg.num_heads {
            let gi = head / n_rep;
            let q0 = sp.start * qw + head * d;
            let k0 = sp.start * kw + gi * d;
            let keys = &kc[base + gi * d..base + len * kw];
            let vals = &vc[base + gi * d..base + len * kw];
            // P = causal softmax(q·kᵀ·s), recomputed.
            product(
                Operand::rows(&t.q[q0..], qw),
                Operand::transposed(keys, kw),
                &mut p,
                len,
                (len, len, d),
                1.0,
                Into::Overwrite,
            );
            for i in 0..len {
                let row = &mut p[i * len..(i + 1) * len];
                forward::scaled_softmax(&mut row[..=i], scale);
                row[i + 1..].fill(0.0);
            }
            let d_out = Operand::rows(&dattn[q0..], qw);
            // dV += Pᵀ·dO
            product(
                Operand::transposed(&p, len),
                d_out,
                &mut dv[k0..],
                kw,
                (len, d, len),
                1.0,
                Into::Add,
            );
            // dP = dO·Vᵀ, then dS = P ⊙ (dP − Σ P·dP) over the visible keys.
            product(
                d_out,
                Operand::transposed(vals, kw),
                &mut dp,
                len,
                (len, len, d),
                1.0,
                Into::Overwrite,
            );
            for i in 0..len {
                let (pr, dr) = (
                    &p[i * len..i * len + i + 1],
                    &mut dp[i * len..(i + 1) * len],
                );
                simd::softmax_backward(pr, &mut dr[..=i]);
                dr[i + 1..].fill(0.0);
            }
            // dq = s·dS·K, dK += s·dSᵀ·q
            product(
                Operand::rows(&dp, len),
                Operand::rows(keys, kw),
                &mut dq[q0..],
                qw,
                (len, d, len),
                scale,
                Into::Overwrite,
            );
            product(
                Operand::transposed(&dp, len),
                Operand::rows(&t.q[q0..], qw),
                &mut dk[k0..],
                kw,
                (len, d, len),
                scale,
                Into::Add,
            );
        }
    }
    for sp in &g.spans {
        for i in 0..sp.len {
            let row = sp.start + i;
            g.rope.apply_inverse(&mut dq[row * qw..(row + 1) * qw], i);
            g.rope.apply_inverse(&mut dk[row * kw..(row + 1) * kw], i);
        }
    }
    let mut dnormed = vec![0f32; n * h];
    linear_backward(
        l.q,
        &t.normed_in,
        &dq,
        &mut dnormed,
        (n, qw, h),
        Into::Overwrite,
        grads,
    );
    linear_backward(
        l.k,
        &t.normed_in,
        &dk,
        &mut dnormed,
        (n, kw, h),
        Into::Add,
        grads,
    );
    linear_backward(
        l.v,
        &t.normed_in,
        &dv,
        &mut dnormed,
        (n, kw, h),
        Into::Add,
        grads,
    );
    norm_backward(
        &t.x_in,
        l.input_norm,
        cfg.rms_norm_eps as f32,
        &dnormed,
        dx,
        grads.of(l.input_norm),
        h,
    );
}
