//! The decoder's forward pass over a packed group of sequences, without padding, writing
//! keys and values into a [`KvCache`]. One call runs on the calling thread.
//!
//! Layout: the group's new tokens are the rows of one `(n, hidden)` matrix, sequence after
//! sequence ([`Span`]: rows `start..start + len` continue `past` cached positions of cache
//! slot `slot`). Projections are single matmuls over all rows; attention runs per sequence
//! and head over that sequence's cache only, so no token sees another sequence, and no
//! padding is ever computed. Row results do not depend on which other sequences share the
//! group (see [`super::matmul`]).
//!
//! Numerics: f32 throughout, the operations and order of transformers' Llama
//! (`x + attn(norm(x))`, `x + mlp(norm(x))`, rotate-half RoPE with f32 angles, softmax of
//! `q·kᵀ·d^-½` over visible keys). Versus the differentiable candle path the differences are
//! summation order and the `exp` polynomial: ~1e-6 relative on logits (tests bound it).

use super::matmul::{Into, Operand, matmul_wt, product};
use super::weights::{Lin, LoraLin, Weights};
use crate::model::simd;

/// One sequence's rows in a packed group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First row of its new tokens.
    pub start: usize,
    /// Number of new tokens.
    pub len: usize,
    /// Positions already in its cache slot.
    pub past: usize,
    /// Its cache slot.
    pub slot: usize,
    /// A slot whose first `past` positions this sequence shares (a common prefix computed
    /// once in the same pass): copied into its own slot, layer by layer, before attending.
    pub copies: Option<usize>,
}

/// Keys and values per layer: `slots × capacity × (kv_heads·head_dim)` each.
pub struct KvCache {
    capacity: usize,
    width: usize,
    pub(super) k: Vec<Vec<f32>>,
    pub(super) v: Vec<Vec<f32>>,
}

impl KvCache {
    pub fn new(w: &Weights, slots: usize, capacity: usize) -> Self {
        let width = w.cfg.num_kv_heads * w.cfg.head_dim;
        let size = slots * capacity * width;
        KvCache {
            capacity,
            width,
            k: (0..w.cfg.num_layers).map(|_| vec![0.0; size]).collect(),
            v: (0..w.cfg.num_layers).map(|_| vec![0.0; size]).collect(),
        }
    }

    pub(super) fn offset(&self, slot: usize, pos: usize) -> usize {
        (slot * self.capacity + pos) * self.width
    }

    /// Copy the first `n` positions of slot `from` into slot `to`, at `layer`.
    fn copy_prefix(&mut self, layer: usize, from: usize, to: usize, n: usize) {
        let (src, dst, len) = (self.offset(from, 0), self.offset(to, 0), n * self.width);
        self.k[layer].copy_within(src..src + len, dst);
        self.v[layer].copy_within(src..src + len, dst);
    }
}

/// `cos`/`sin` of every position up to a capacity: `(positions, head_dim / 2)` each.
pub struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    pub fn new(w: &Weights, positions: usize) -> Self {
        let d = w.cfg.head_dim;
        let half = d / 2;
        let theta = w.cfg.rope_theta as f32;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / theta.powf(2.0 * i as f32 / d as f32))
            .collect();
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for p in 0..positions {
            for f in &inv_freq {
                // f32 angles, as transformers (and the candle path) compute them.
                let angle = f64::from(p as f32 * f);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        RopeTable { half, cos, sin }
    }

    /// The inverse rotation (the transpose): RoPE's backward for a gradient `row`.
    pub(super) fn apply_inverse(&self, row: &mut [f32], pos: usize) {
        self.rotate(row, pos, -1.0);
    }

    /// Rotate each `2·half`-wide head of `row` for position `pos`.
    pub(super) fn apply(&self, row: &mut [f32], pos: usize) {
        self.rotate(row, pos, 1.0);
    }

    /// `[x1, x2] → [x1·cos − x2·sin·dir, x2·cos + x1·sin·dir]` per head (`dir` = ±1).
    fn rotate(&self, row: &mut [f32], pos: usize, dir: f32) {
        let h = self.half;
        let (cos, sin) = (
            &self.cos[pos * h..(pos + 1) * h],
            &self.sin[pos * h..(pos + 1) * h],
        );
        for head in row.chunks_exact_mut(2 * h) {
            let (x1, x2) = head.split_at_mut(h);
            for i in 0..h {
                let (a, b, s) = (x1[i], x2[i], sin[i] * dir);
                x1[i] = a * cos[i] - b * s;
                x2[i] = b * cos[i] + a * s;
            }
        }
    }
}

/// Work buffers, reused across layers and calls (grown on demand, never shrunk).
#[derive(Default)]
pub struct Scratch {
    normed: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    scores: Vec<f32>,
}

fn sized(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if buf.len() < n {
        buf.resize(n, 0.0);
    }
    &mut buf[..n]
}

/// What the backward pass ([`super::train`]) needs of one layer's forward, `(rows, ·)` each.
/// Keys and values (after RoPE) stay in the [`KvCache`]; the normed inputs of the attention
/// and the MLP are recomputed from `x_in` and `x_mid` ([`rms_normed`]: the same bits).
#[derive(Default)]
pub struct LayerTape {
    /// The layer's input (residual stream).
    pub x_in: Vec<f32>,
    /// Queries after RoPE.
    pub q: Vec<f32>,
    /// Attention output before `o_proj`.
    pub attn: Vec<f32>,
    /// The residual stream after attention.
    pub x_mid: Vec<f32>,
    /// `gate_proj` and `up_proj` outputs (before SiLU).
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
}

impl LayerTape {
    /// The floats it holds.
    pub fn floats(&self) -> usize {
        [
            &self.x_in,
            &self.q,
            &self.attn,
            &self.x_mid,
            &self.gate,
            &self.up,
        ]
        .iter()
        .map(|v| v.len())
        .sum()
    }
}

/// A recorded forward pass: every layer's [`LayerTape`] and the stream before the final norm.
#[derive(Default)]
pub struct Tape {
    pub layers: Vec<LayerTape>,
    pub x_final: Vec<f32>,
}

/// Run `ids` (the rows of `spans`, in order) through every layer and the final norm:
/// `(rows, hidden)` normed hidden states. Keys and values are appended to `cache`; with a
/// `tape`, what the backward pass needs is recorded.
pub fn hidden(
    w: &Weights,
    ids: &[u32],
    spans: &[Span],
    rope: &RopeTable,
    cache: &mut KvCache,
    s: &mut Scratch,
    mut tape: Option<&mut Tape>,
) -> Vec<f32> {
    let h = w.cfg.hidden_size;
    let n = ids.len();
    let mut x = vec![0f32; n * h];
    for (row, &id) in x.chunks_exact_mut(h).zip(ids) {
        let id = id as usize;
        row.copy_from_slice(&w.embed[id * h..(id + 1) * h]);
    }
    for layer in 0..w.layers.len() {
        let mut lt = tape.as_ref().map(|_| LayerTape::default());
        attention_block(w, layer, &mut x, spans, rope, cache, s, lt.as_mut());
        mlp_block(w, layer, &mut x, s, lt.as_mut());
        if let (Some(t), Some(lt)) = (tape.as_deref_mut(), lt) {
            t.layers.push(lt);
        }
    }
    if let Some(t) = tape {
        t.x_final = x.clone();
    }
    let mut out = Vec::new();
    normed(&mut out, &x, w.norm, w.cfg.rms_norm_eps, h);
    out
}

/// `(rows, out, inp)` of a linear layer applied to `rows` inputs.
type Dims = (usize, usize, usize);

/// `y = x·Wᵀ + b (+ scale·(x·Aᵀ)·Bᵀ)` for `rows` rows.
pub(super) fn linear(lin: Lin, x: &[f32], y: &mut [f32], (rows, out, inp): Dims, into: Into) {
    matmul_wt(x, inp, lin.w, y, out, (rows, out, inp), into);
    if let Some(b) = lin.b {
        for row in y.chunks_exact_mut(out) {
            for (y, b) in row.iter_mut().zip(b) {
                *y += b;
            }
        }
    }
    if let Some(lo) = lin.lora {
        let mut u = lora_down(lo, x, (rows, inp));
        u.iter_mut().for_each(|v| *v *= lo.scale);
        matmul_wt(&u, lo.rank, lo.b, y, out, (rows, out, lo.rank), Into::Add);
    }
}

/// `x·Aᵀ`, `(rows, rank)`: the input of an adapter's `B`.
pub(super) fn lora_down(lo: LoraLin, x: &[f32], (rows, inp): (usize, usize)) -> Vec<f32> {
    let mut u = vec![0f32; rows * lo.rank];
    matmul_wt(
        x,
        inp,
        lo.a,
        &mut u,
        lo.rank,
        (rows, lo.rank, inp),
        Into::Overwrite,
    );
    u
}

/// RMSNorm of every `h`-wide row of `x` into `buf` (resized).
fn normed<'a>(buf: &'a mut Vec<f32>, x: &[f32], weight: &[f32], eps: f64, h: usize) -> &'a [f32] {
    let out = sized(buf, x.len());
    for (o, xr) in out.chunks_exact_mut(h).zip(x.chunks_exact(h)) {
        simd::rms_norm(xr, weight, eps as f32, o);
    }
    out
}

/// RMSNorm of every `h`-wide row of `x`, as the forward pass computes it.
pub(super) fn rms_normed(x: &[f32], weight: &[f32], eps: f64, h: usize) -> Vec<f32> {
    let mut out = Vec::new();
    normed(&mut out, x, weight, eps, h);
    out
}

/// `lin(x)` for `(rows, out, inp)` into `buf` (resized to `rows · out`).
fn projected<'a>(buf: &'a mut Vec<f32>, lin: Lin, x: &[f32], dims: Dims) -> &'a mut [f32] {
    let y = sized(buf, dims.0 * dims.1);
    linear(lin, x, y, dims, Into::Overwrite);
    y
}

#[allow(clippy::too_many_arguments)]
fn attention_block(
    w: &Weights,
    layer: usize,
    x: &mut [f32],
    spans: &[Span],
    rope: &RopeTable,
    cache: &mut KvCache,
    s: &mut Scratch,
    tape: Option<&mut LayerTape>,
) {
    let cfg = w.cfg;
    let l = &w.layers[layer];
    let (h, d) = (cfg.hidden_size, cfg.head_dim);
    let (qw, kw) = (cfg.num_heads * d, cfg.num_kv_heads * d);
    let n = x.len() / h;
    let normed = normed(&mut s.normed, x, l.input_norm, cfg.rms_norm_eps, h);
    let q = projected(&mut s.q, l.q, normed, (n, qw, h));
    let k = projected(&mut s.k, l.k, normed, (n, kw, h));
    let v = projected(&mut s.v, l.v, normed, (n, kw, h));
    for sp in spans {
        for i in 0..sp.len {
            let (row, pos) = (sp.start + i, sp.past + i);
            rope.apply(&mut q[row * qw..(row + 1) * qw], pos);
            rope.apply(&mut k[row * kw..(row + 1) * kw], pos);
            let at = cache.offset(sp.slot, pos);
            cache.k[layer][at..at + kw].copy_from_slice(&k[row * kw..(row + 1) * kw]);
            cache.v[layer][at..at + kw].copy_from_slice(&v[row * kw..(row + 1) * kw]);
        }
    }
    for sp in spans {
        if let Some(from) = sp.copies {
            cache.copy_prefix(layer, from, sp.slot, sp.past);
        }
    }
    let attn = sized(&mut s.attn, n * qw);
    for sp in spans {
        attend(
            cfg,
            sp,
            q,
            &cache.k[layer],
            &cache.v[layer],
            cache,
            attn,
            &mut s.scores,
        );
    }
    if let Some(t) = tape {
        t.x_in = x.to_vec();
        t.q = q.to_vec();
        t.attn = attn.to_vec();
    }
    linear(l.o, attn, x, (n, h, qw), Into::Add);
}

/// Causal attention of one sequence's new rows over its cache slot, all heads.
#[allow(clippy::too_many_arguments)]
fn attend(
    cfg: &crate::model::config::ModelConfig,
    sp: &Span,
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    cache: &KvCache,
    attn: &mut [f32],
    scores: &mut Vec<f32>,
) {
    let d = cfg.head_dim;
    let qw = cfg.num_heads * d;
    let kw = cache.width;
    let n_rep = cfg.num_heads / cfg.num_kv_heads;
    let total = sp.past + sp.len;
    let scale = 1.0 / (d as f32).sqrt();
    let base = cache.offset(sp.slot, 0);
    let sc = sized(scores, sp.len * total);
    for head in 0..cfg.num_heads {
        let g = head / n_rep;
        let q0 = sp.start * qw + head * d;
        let keys = &kc[base + g * d..base + total * kw];
        let vals = &vc[base + g * d..base + total * kw];
        if sp.len == 1 {
            // One query (a decode step): dot products and a weighted sum of values.
            let qr = &q[q0..q0 + d];
            for (j, s) in sc.iter_mut().enumerate() {
                *s = simd::dot(qr, &keys[j * kw..j * kw + d]) * scale;
            }
            simd::softmax(sc);
            let out = &mut attn[q0..q0 + d];
            out.fill(0.0);
            for (j, &p) in sc.iter().enumerate() {
                simd::axpy(out, p, &vals[j * kw..j * kw + d]);
            }
            continue;
        }
        product(
            Operand::rows(&q[q0..], qw),
            Operand::transposed(keys, kw),
            sc,
            total,
            (sp.len, total, d),
            1.0,
            Into::Overwrite,
        );
        for i in 0..sp.len {
            let row = &mut sc[i * total..(i + 1) * total];
            let visible = sp.past + i + 1;
            scaled_softmax(&mut row[..visible], scale);
            row[visible..].fill(0.0);
        }
        product(
            Operand::rows(sc, total),
            Operand::rows(vals, kw),
            &mut attn[q0..],
            qw,
            (sp.len, d, total),
            1.0,
            Into::Overwrite,
        );
    }
}

/// `softmax(row · scale)` in place. The scale is applied here, not inside gemm, whose kernels
/// apply it at different points: a row's bits would depend on the product's shape.
pub(super) fn scaled_softmax(row: &mut [f32], scale: f32) {
    for x in row.iter_mut() {
        *x *= scale;
    }
    simd::softmax(row);
}

fn mlp_block(
    w: &Weights,
    layer: usize,
    x: &mut [f32],
    s: &mut Scratch,
    tape: Option<&mut LayerTape>,
) {
    let cfg = w.cfg;
    let l = &w.layers[layer];
    let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
    let n = x.len() / h;
    let normed = normed(&mut s.normed, x, l.post_norm, cfg.rms_norm_eps, h);
    let gate = projected(&mut s.gate, l.gate, normed, (n, inter, h));
    let up = projected(&mut s.up, l.up, normed, (n, inter, h));
    if let Some(t) = tape {
        t.x_mid = x.to_vec();
        t.gate = gate.to_vec();
        t.up = up.to_vec();
    }
    simd::silu_mul(gate, up);
    linear(l.down, gate, x, (n, h, inter), Into::Add);
}
