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
//! - RoPE: the inverse rotation; embeddings: rows scattered back (tied head: same buffer);
//! - LoRA `y += s·(x·Aᵀ)·Bᵀ`: `dB += s·dyᵀ·(x·Aᵀ)`, `du = s·dy·B`, `dA += duᵀ·x`,
//!   `dx += du·A`.
//!
//! Only trainable weights (candle `Var`s) get a gradient: under LoRA the base weights are
//! plain tensors, so a step computes no `(out, in)` weight gradient at all, only `dx`
//! through each layer and the adapters' small products.
//!
//! Sequences are split into groups by their tokens only ([`groups`]: under LoRA one sequence
//! each, or two sharing their start, whose prefix is then computed once — a prompt's two
//! responses, a judge prompt's two orders; else runs of a bounded token count), each group's
//! gradient computed on its own thread, and the groups' gradients summed in order: results
//! do not depend on the thread count. For a shared prefix the backward routes the gradients
//! of the keys and values each sequence copied back to the prefix rows.
//!
//! Memory is bounded by design: a group's recorded pass (its activations) is kept for the
//! backward only within [`KEPT_PASS_BYTES`]; past that the backward recomputes it, so a step
//! holds at most that plus one pass per thread, however many pairs its batch has — and the
//! gradients are the same bits either way. (Micro-batches of a pair each with gradient
//! accumulation would not do: SCIR's loss is a mean over the pairs its per-step selection
//! keeps, so a pair's weight depends on the whole batch; recomputing keeps the batch's loss
//! exact.) Tests compare every trainable weight's gradient with candle's autograd on the
//! differentiable path.

mod groups;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use rayon::prelude::*;

use self::groups::{Layout, Plan, layout_of, plan, response_rows_in};
use super::forward::{self, KvCache, RopeTable, Span, Tape};
use super::matmul::{Into, Operand, product};
use super::weights::{self, Lin, LoraLin, Weights};
use super::{ResponseRows, gather_rows, summed_logprobs, vocab_logits};
use crate::model::batch::Pair;
use crate::model::decoder::Decoder;
use crate::model::linear::Adapters;
use crate::model::simd;

/// Recorded forward passes kept for the backward, in bytes, per [`Recorder`]; a group past
/// it drops its pass and the backward recomputes it (the same bits: the forward pass is
/// deterministic). This bounds a step's memory whatever its batch size. 1.5 GiB: the
/// SmolLM2 example's SCIR step (~1 600 tokens, ~0.7 MB each) keeps all of its passes.
const KEPT_PASS_BYTES: usize = 3 << 29;

/// Per-group gradients held at once by the backward, in bytes (full fine-tuning of a large
/// model holds one per thread; LoRA's small ones let every group run at once).
const GRAD_PARTS_BYTES: usize = 256 << 20;

/// What a recorded group's outputs are.
enum Head {
    /// Per sequence, the sum of log-probs of its response tokens.
    LogProbs { rr: ResponseRows },
    /// Per sequence, the logits of `tokens` at its last row.
    Last { tokens: Vec<u32> },
}

/// One group's recorded forward pass.
struct Pass {
    layout: Layout,
    rope: RopeTable,
    cache: KvCache,
    tape: Tape,
    /// Final normed hidden states `(rows, hidden)`.
    hidden: Vec<f32>,
    /// For [`Head::LogProbs`], the hidden states at the response rows and the logits there.
    picked: Vec<f32>,
    logits: Vec<f32>,
}

impl Pass {
    /// Roughly the bytes it holds.
    fn bytes(&self) -> usize {
        let tape: usize = self
            .tape
            .layers
            .iter()
            .map(forward::LayerTape::floats)
            .sum();
        let cache: usize = self.cache.k.iter().chain(&self.cache.v).map(Vec::len).sum();
        let rest = self.tape.x_final.len() + self.hidden.len() + self.picked.len();
        4 * (tape + cache + rest + self.logits.len())
    }
}

/// One group of a recorded output: which of its sequences, sharing how many leading tokens,
/// its head, and its forward pass unless it was dropped (see [`KEPT_PASS_BYTES`]).
struct Group {
    plan: Plan,
    head: Head,
    pass: Option<Pass>,
}

/// Recorded model outputs of one training step; see the module docs.
pub struct Recorder<'d> {
    dec: &'d Decoder,
    outputs: Vec<Recorded>,
    kept: AtomicUsize,
    budget: usize,
}

/// One recorded output: its leaf tensor, its sequences and groups, and how many values each
/// sequence contributes to the leaf.
struct Recorded {
    leaf: Tensor,
    seqs: Vec<Vec<u32>>,
    groups: Vec<Group>,
    per_seq: usize,
}

/// Gradient buffers keyed by the address of the weight slice they belong to, for the
/// trainable weights only (see [`weights::Locked::trainable`]).
struct Grads<'s> {
    bufs: HashMap<usize, Vec<f32>>,
    trainable: &'s HashSet<usize>,
}

impl<'s> Grads<'s> {
    fn new(trainable: &'s HashSet<usize>) -> Self {
        Grads {
            bufs: HashMap::new(),
            trainable,
        }
    }

    /// Whether the backward of `lin` reads its input (for its weight's gradient or an
    /// adapter's).
    fn needs_input(&self, lin: Lin) -> bool {
        lin.lora.is_some() || self.trainable.contains(&(lin.w.as_ptr() as usize))
    }

    /// The gradient buffer of `w`, or `None` when `w` is not trainable.
    fn of(&mut self, w: &[f32]) -> Option<&mut [f32]> {
        let key = w.as_ptr() as usize;
        if !self.trainable.contains(&key) {
            return None;
        }
        Some(self.bufs.entry(key).or_insert_with(|| vec![0.0; w.len()]))
    }

    fn add(&mut self, other: Grads) {
        for (key, buf) in other.bufs {
            match self.bufs.get_mut(&key) {
                Some(mine) => mine.iter_mut().zip(&buf).for_each(|(a, b)| *a += b),
                None => {
                    self.bufs.insert(key, buf);
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
            kept: AtomicUsize::new(0),
            budget: KEPT_PASS_BYTES,
        })
    }

    /// Keep at most `bytes` of recorded passes (default [`KEPT_PASS_BYTES`]); the gradients
    /// are the same bits whatever the budget (tests use 0: every pass recomputed).
    pub fn keeping_at_most(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
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
        self.record(&seqs, items.len(), |plan, layout| Head::LogProbs {
            rr: response_rows_in(layout, &seqs, &prompt_lens, &plan.members),
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
        head: impl Fn(&Plan, &Layout) -> Head + Sync,
    ) -> anyhow::Result<Tensor> {
        let locked = lock(self.dec)?;
        let w = Weights::new(self.dec, &locked);
        super::check_ids(&w, seqs)?;
        let (kept, budget) = (&self.kept, self.budget);
        let per_seq = outputs / seqs.len().max(1);
        let groups: Vec<(Group, Vec<f32>)> = plan(seqs, w.has_adapters())
            .into_par_iter()
            .map(|plan| {
                let layout = layout_of(seqs, &plan);
                let head = head(&plan, &layout);
                let (pass, values) = forward_pass(&w, layout, &head);
                let pass = keep_within(budget, kept, pass);
                (Group { plan, head, pass }, values)
            })
            .collect();
        let mut values = vec![0f32; outputs];
        let mut kept_groups = Vec::with_capacity(groups.len());
        for (g, v) in groups {
            for (&m, chunk) in g.plan.members.iter().zip(v.chunks_exact(per_seq.max(1))) {
                values[m * per_seq..(m + 1) * per_seq].copy_from_slice(chunk);
            }
            kept_groups.push(g);
        }
        let leaf = Var::from_vec(values, outputs, &Device::Cpu)?
            .as_tensor()
            .clone();
        self.outputs.push(Recorded {
            leaf: leaf.clone(),
            seqs: seqs.to_vec(),
            groups: kept_groups,
            per_seq,
        });
        Ok(leaf)
    }

    /// The trainable weights' gradients given `grads` (from `loss.backward()`), as a store
    /// keyed by the decoder's tensors. Groups are pushed back in parallel, as many at a time
    /// as [`GRAD_PARTS_BYTES`] of per-group gradients allow (at least one per thread), and
    /// summed in order: memory stays bounded, and the sum does not depend on the machine.
    pub fn weight_grads(self, grads: &GradStore) -> anyhow::Result<GradStore> {
        let locked = lock(self.dec)?;
        let w = Weights::new(self.dec, &locked);
        let trainable = locked.trainable();
        let mut jobs = Vec::new();
        for Recorded {
            leaf,
            seqs,
            groups,
            per_seq,
        } in &self.outputs
        {
            let Some(g) = grads.get(leaf) else { continue };
            let upstream = g.flatten_all()?.to_vec1::<f32>()?;
            for group in groups {
                let up: Vec<f32> = group
                    .plan
                    .members
                    .iter()
                    .flat_map(|&m| upstream[m * per_seq..(m + 1) * per_seq].iter().copied())
                    .collect();
                jobs.push((seqs, group, up));
            }
        }
        let mut total = Grads::new(&trainable);
        let trainable_bytes: usize = locked
            .entries()
            .filter(|(_, s)| trainable.contains(&(s.as_ptr() as usize)))
            .map(|(_, s)| 4 * s.len())
            .sum();
        let width = (GRAD_PARTS_BYTES / trainable_bytes.max(1))
            .max(rayon::current_num_threads())
            .max(1);
        for chunk in jobs.chunks(width) {
            let parts: Vec<Grads> = chunk
                .par_iter()
                .map(|(seqs, group, up)| {
                    let fresh;
                    let pass = match &group.pass {
                        Some(p) => p,
                        None => {
                            fresh = forward_pass(&w, layout_of(seqs, &group.plan), &group.head).0;
                            &fresh
                        }
                    };
                    backward_group(&w, pass, &group.head, up, &trainable)
                })
                .collect();
            for p in parts {
                total.add(p);
            }
        }
        let mut store = GradStore::default();
        let mut seen = HashSet::new();
        for (tensor, slice) in locked.entries() {
            if !seen.insert(tensor.id()) {
                continue;
            }
            if let Some(buf) = total.bufs.remove(&(slice.as_ptr() as usize)) {
                store.insert(tensor, Tensor::from_vec(buf, tensor.shape(), &Device::Cpu)?);
            }
        }
        Ok(store)
    }
}

/// The decoder's weights (and active adapters) for training.
fn lock(dec: &Decoder) -> anyhow::Result<weights::Locked<'_>> {
    weights::lock_any_head(dec, Adapters::On)
        .ok_or_else(|| anyhow::anyhow!("internal error: the fast path stopped applying"))
}

/// `pass` if it fits in what is left of `budget` bytes (`kept` so far), else `None`.
fn keep_within(budget: usize, kept: &AtomicUsize, pass: Pass) -> Option<Pass> {
    let bytes = pass.bytes();
    let before = kept.fetch_add(bytes, Ordering::Relaxed);
    if before + bytes <= budget {
        return Some(pass);
    }
    kept.fetch_sub(bytes, Ordering::Relaxed);
    None
}

/// Run a group's rows recording the forward pass; the head's outputs.
fn forward_pass(w: &Weights, layout: Layout, head: &Head) -> (Pass, Vec<f32>) {
    let mut tape = Tape::default();
    let super::Fresh {
        rope,
        cache,
        hidden,
        ..
    } = super::run_packed(
        w,
        &layout.ids,
        layout.spans.clone(),
        layout.positions,
        Some(&mut tape),
    );
    let mut pass = Pass {
        layout,
        rope,
        cache,
        tape,
        hidden,
        picked: Vec::new(),
        logits: Vec::new(),
    };
    let values = head_values(w, &mut pass, head);
    (pass, values)
}

/// The head's outputs (and, for log-probs, the logits kept for the backward).
fn head_values(w: &Weights, p: &mut Pass, head: &Head) -> Vec<f32> {
    let h = w.cfg.hidden_size;
    let vocab = w.cfg.vocab_size;
    match head {
        Head::LogProbs { rr } => {
            p.picked = gather_rows(&p.hidden, &rr.rows, h);
            p.logits = vocab_logits(w, &p.picked);
            summed_logprobs(&p.logits, vocab, rr, p.layout.members())
        }
        Head::Last { tokens } => {
            let members = p.layout.members();
            let mut out = Vec::with_capacity(members * tokens.len());
            for m in 0..members {
                let row = p.layout.last_row(m);
                let x = &p.hidden[row * h..(row + 1) * h];
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
fn head_backward(w: &Weights, g: &Pass, head: &Head, up: &[f32], grads: &mut Grads) -> Vec<f32> {
    let h = w.cfg.hidden_size;
    let vocab = w.cfg.vocab_size;
    let n = g.layout.ids.len();
    let mut dh = vec![0f32; n * h];
    match head {
        Head::LogProbs { rr } => {
            let (picked, logits) = (&g.picked, &g.logits);
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
            if let Some(dw) = grads.of(w.lm_head) {
                product(
                    Operand::transposed(&dlogits, vocab),
                    Operand::rows(picked, h),
                    dw,
                    h,
                    (vocab, h, p),
                    1.0,
                    Into::Add,
                );
            }
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
            for i in 0..g.layout.members() {
                let row = g.layout.last_row(i);
                for (j, &t) in tokens.iter().enumerate() {
                    let u = up[i * k + j];
                    let t = t as usize;
                    let x = &g.hidden[row * h..(row + 1) * h];
                    if let Some(dw) = grads.of(w.lm_head) {
                        simd::axpy(&mut dw[t * h..(t + 1) * h], u, x);
                    }
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

fn backward_group<'s>(
    w: &Weights,
    g: &Pass,
    head: &Head,
    up: &[f32],
    trainable: &'s HashSet<usize>,
) -> Grads<'s> {
    let cfg = w.cfg;
    let h = cfg.hidden_size;
    let eps = cfg.rms_norm_eps as f32;
    let mut grads = Grads::new(trainable);
    let dh = head_backward(w, g, head, up, &mut grads);
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
    if let Some(emb) = grads.of(w.embed) {
        for (&id, d) in g.layout.ids.iter().zip(dx.chunks_exact(h)) {
            let id = id as usize;
            emb[id * h..(id + 1) * h]
                .iter_mut()
                .zip(d)
                .for_each(|(a, b)| *a += b);
        }
    }
    grads
}

/// `dx += RMSNorm backward(dy)` row by row; `dw` accumulates (when the weight trains).
fn norm_backward(
    x: &[f32],
    weight: &[f32],
    eps: f32,
    dy: &[f32],
    dx: &mut [f32],
    dw: Option<&mut [f32]>,
    h: usize,
) {
    let mut unused = Vec::new();
    let dw = match dw {
        Some(dw) => dw,
        None => {
            unused.resize(h, 0.0);
            &mut unused[..]
        }
    };
    for ((xr, dyr), dxr) in x
        .chunks_exact(h)
        .zip(dy.chunks_exact(h))
        .zip(dx.chunks_exact_mut(h))
    {
        simd::rms_norm_backward(xr, weight, eps, dyr, dxr, dw);
    }
}

/// For `y = x·Wᵀ + b` over `n` rows: `dW += dyᵀ·x`, `db += Σ dy` (for the trainable ones),
/// and `dx (=|+=) dy·W`; with an adapter, also its part (see [`lora_backward`]).
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
    if let Some(dw) = grads.of(lin.w) {
        product(
            Operand::transposed(dy, out),
            Operand::rows(x, inp),
            dw,
            inp,
            (out, inp, n),
            1.0,
            Into::Add,
        );
    }
    if let Some(db) = lin.b.and_then(|b| grads.of(b)) {
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
    if let Some(lo) = lin.lora {
        lora_backward(lo, x, dy, dx, (n, out, inp), grads);
    }
}

/// An adapter's part of a linear layer's backward, `y += s·u·Bᵀ` with `u = x·Aᵀ`
/// (recomputed, `(n, rank)`): `dB += s·dyᵀ·u`, `du = s·dy·B`, `dA += duᵀ·x`, `dx += du·A`.
fn lora_backward(
    lo: LoraLin,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    (n, out, inp): (usize, usize, usize),
    grads: &mut Grads,
) {
    let r = lo.rank;
    if let Some(db) = grads.of(lo.b) {
        let u = forward::lora_down(lo, x, (n, inp));
        product(
            Operand::transposed(dy, out),
            Operand::rows(&u, r),
            db,
            r,
            (out, r, n),
            lo.scale,
            Into::Add,
        );
    }
    let mut du = vec![0f32; n * r];
    product(
        Operand::rows(dy, out),
        Operand::rows(lo.b, r),
        &mut du,
        r,
        (n, r, out),
        lo.scale,
        Into::Overwrite,
    );
    if let Some(da) = grads.of(lo.a) {
        product(
            Operand::transposed(&du, r),
            Operand::rows(x, inp),
            da,
            inp,
            (r, inp, n),
            1.0,
            Into::Add,
        );
    }
    product(
        Operand::rows(&du, r),
        Operand::rows(lo.a, inp),
        dx,
        inp,
        (n, inp, r),
        1.0,
        Into::Add,
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
    // down_proj's input, recomputed only when its weight or an adapter needs it.
    let mut act = vec![0f32; n * inter];
    if grads.needs_input(l.down) {
        simd::silu_mul_into(&t.gate, &t.up, &mut act);
    }
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
    let normed = forward::rms_normed(&t.x_mid, l.post_norm, cfg.rms_norm_eps, h);
    let mut dnormed = vec![0f32; n * h];
    linear_backward(
        l.gate,
        &normed,
        &dgate,
        &mut dnormed,
        (n, inter, h),
        Into::Overwrite,
        grads,
    );
    linear_backward(
        l.up,
        &normed,
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

fn attention_backward(w: &Weights, layer: usize, g: &Pass, dx: &mut [f32], grads: &mut Grads) {
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
    for sp in &g.layout.spans {
        span_attention_backward(cfg, layer, g, sp, t, &dattn, (&mut dq, &mut dk, &mut dv));
    }
    for sp in &g.layout.spans {
        for i in 0..sp.len {
            let row = sp.start + i;
            g.rope
                .apply_inverse(&mut dq[row * qw..(row + 1) * qw], sp.past + i);
            g.rope
                .apply_inverse(&mut dk[row * kw..(row + 1) * kw], sp.past + i);
        }
    }
    let normed = forward::rms_normed(&t.x_in, l.input_norm, cfg.rms_norm_eps, h);
    let mut dnormed = vec![0f32; n * h];
    linear_backward(
        l.q,
        &normed,
        &dq,
        &mut dnormed,
        (n, qw, h),
        Into::Overwrite,
        grads,
    );
    linear_backward(
        l.k,
        &normed,
        &dk,
        &mut dnormed,
        (n, kw, h),
        Into::Add,
        grads,
    );
    linear_backward(
        l.v,
        &normed,
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

/// One sequence's attention backward, all heads (`P = softmax(q·kᵀ·s)` recomputed, causal
/// over its `past + len` visible keys): `dq` of its rows, and `dK`, `dV` of every key it
/// saw — its own rows', and for a shared prefix ([`Span::copies`]) the prefix rows'.
fn span_attention_backward(
    cfg: &crate::model::config::ModelConfig,
    layer: usize,
    g: &Pass,
    sp: &Span,
    t: &forward::LayerTape,
    dattn: &[f32],
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let d = cfg.head_dim;
    let (qw, kw) = (cfg.num_heads * d, cfg.num_kv_heads * d);
    let (kc, vc) = (&g.cache.k[layer], &g.cache.v[layer]);
    let n_rep = cfg.num_heads / cfg.num_kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    let (len, total) = (sp.len, sp.past + sp.len);
    let base = g.cache.offset(sp.slot, 0);
    let mut p = vec![0f32; len * total];
    let mut dp = vec![0f32; len * total];
    // dK and dV of the visible keys (positions 0..total), added to their rows at the end.
    let (mut dks, mut dvs) = (vec![0f32; total * kw], vec![0f32; total * kw]);
    for head in 0..cfg.num_heads {
        let gi = head / n_rep;
        let q0 = sp.start * qw + head * d;
        let keys = &kc[base + gi * d..base + total * kw];
        let vals = &vc[base + gi * d..base + total * kw];
        // P = causal softmax(q·kᵀ·s), recomputed.
        product(
            Operand::rows(&t.q[q0..], qw),
            Operand::transposed(keys, kw),
            &mut p,
            total,
            (len, total, d),
            1.0,
            Into::Overwrite,
        );
        for i in 0..len {
            let row = &mut p[i * total..(i + 1) * total];
            let visible = sp.past + i + 1;
            forward::scaled_softmax(&mut row[..visible], scale);
            row[visible..].fill(0.0);
        }
        let d_out = Operand::rows(&dattn[q0..], qw);
        // dV += Pᵀ·dO
        product(
            Operand::transposed(&p, total),
            d_out,
            &mut dvs[gi * d..],
            kw,
            (total, d, len),
            1.0,
            Into::Add,
        );
        // dP = dO·Vᵀ, then dS = P ⊙ (dP − Σ P·dP) over the visible keys.
        product(
            d_out,
            Operand::transposed(vals, kw),
            &mut dp,
            total,
            (len, total, d),
            1.0,
            Into::Overwrite,
        );
        for i in 0..len {
            let visible = sp.past + i + 1;
            let (pr, dr) = (
                &p[i * total..i * total + visible],
                &mut dp[i * total..(i + 1) * total],
            );
            simd::softmax_backward(pr, &mut dr[..visible]);
            dr[visible..].fill(0.0);
        }
        // dq = s·dS·K, dK += s·dSᵀ·q
        product(
            Operand::rows(&dp, total),
            Operand::rows(keys, kw),
            &mut dq[q0..],
            qw,
            (len, d, total),
            scale,
            Into::Overwrite,
        );
        product(
            Operand::transposed(&dp, total),
            Operand::rows(&t.q[q0..], qw),
            &mut dks[gi * d..],
            kw,
            (total, d, len),
            scale,
            Into::Add,
        );
    }
    let prefix_start = sp.copies.map(|slot| {
        let owner = g.layout.spans.iter().find(|s| s.slot == slot);
        owner.expect("a shared prefix has its own span").start
    });
    for pos in 0..total {
        let row = match prefix_start {
            Some(start) if pos < sp.past => start + pos,
            _ => sp.start + pos - sp.past,
        };
        let (src, dst) = (pos * kw..(pos + 1) * kw, row * kw..(row + 1) * kw);
        dk[dst.clone()]
            .iter_mut()
            .zip(&dks[src.clone()])
            .for_each(|(a, b)| *a += b);
        dv[dst].iter_mut().zip(&dvs[src]).for_each(|(a, b)| *a += b);
    }
}
