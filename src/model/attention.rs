//! Grouped-query self-attention from differentiable ops.
//!
//! `x: (b, t, hidden)` → q `(b, heads, t, d)`, k/v `(b, kv_heads, t, d)` (RoPE on q and k),
//! k/v appended to the cache when there is one; head `i` uses kv head
//! `i / (heads / kv_heads)` (transformers' `repeat_kv`). With a cache this is computed
//! without repeating k/v: the `heads / kv_heads` query heads of one kv head are stacked into
//! one matmul (`(b, kv_heads, n_rep·t, d)·(b, kv_heads, d, T)`); without one k/v are
//! repeated (training keeps its gradient summation order); then
//! `softmax(q·kᵀ/√d + mask)·v` → `(b, t, heads·d)` → `o_proj` → `(b, t, hidden)`.
//! The softmax is `candle_nn::ops::softmax` (a composition with a backward), never the fused
//! `softmax_last_dim`. The additive mask is `(b, 1, t, t_past + t)`.

use candle_core::{D, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::ModelConfig;
use super::kv_cache::KvCache;
use super::linear::{Adapters, Linear};
use super::rope::RopeTables;

/// One attention block's projections and head layout.
#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// Read `{prefix}.{q,k,v,o}_proj` from `vb` (prefix `model.layers.{i}.self_attn`).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let (q_out, kv_out) = (cfg.num_heads * d, cfg.num_kv_heads * d);
        Ok(Attention {
            q_proj: Linear::new(vb.pp("q_proj"), h, q_out, cfg.qkv_bias)?,
            k_proj: Linear::new(vb.pp("k_proj"), h, kv_out, cfg.qkv_bias)?,
            v_proj: Linear::new(vb.pp("v_proj"), h, kv_out, cfg.qkv_bias)?,
            o_proj: Linear::new(vb.pp("o_proj"), q_out, h, cfg.o_bias)?,
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            head_dim: d,
        })
    }

    /// `x: (b, t, hidden)` → `(b, t, hidden)`. `cache` is `(cache, layer index)`.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &RopeTables,
        mask: &Tensor,
        cache: Option<(&mut KvCache, usize)>,
        adapters: Adapters,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            y.reshape((b, t, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.q_proj.forward(x, adapters)?, self.num_heads)?;
        let k = heads(self.k_proj.forward(x, adapters)?, self.num_kv_heads)?;
        let v = heads(self.v_proj.forward(x, adapters)?, self.num_kv_heads)?;
        let q = rope.apply(&q)?;
        let k = rope.apply(&k)?;
        // With a cache (inference) the query heads are grouped per kv head; without one
        // (training, scoring) k/v are repeated, which keeps the k/v gradients' summation
        // order, and so training results, bit-identical to transformers-style repeat_kv.
        let (k, v, kvh) = match cache {
            Some((cache, layer)) => {
                let (k, v) = cache.append(layer, &k, &v)?;
                (k, v, self.num_kv_heads)
            }
            None => (self.repeat_kv(k)?, self.repeat_kv(v)?, self.num_heads),
        };
        let d = self.head_dim;
        let n_rep = self.num_heads / kvh;
        let t_all = k.dim(2)?;
        let scale = 1.0 / (d as f64).sqrt();
        let q = q.reshape((b, kvh, n_rep * t, d))?;
        let scores = (q.matmul(&k.t()?)? * scale)?
            .reshape((b, self.num_heads, t, t_all))?
            .broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let out = probs
            .reshape((b, kvh, n_rep * t, t_all))?
            .matmul(&v)?
            .reshape((b, self.num_heads, t, d))?
            .transpose(1, 2)?
            .contiguous()?;
        let out = out.reshape((b, t, self.num_heads * d))?;
        self.o_proj.forward(&out, adapters)
    }

    /// `(b, kv_heads, t, d)` → `(b, heads, t, d)`.
    fn repeat_kv(&self, x: Tensor) -> Result<Tensor> {
        let n_rep = self.num_heads / self.num_kv_heads;
        if n_rep == 1 {
            return Ok(x);
        }
        let (b, kvh, t, d) = x.dims4()?;
        let copies = vec![&x; n_rep];
        Tensor::cat(&copies, 2)?.reshape((b, kvh * n_rep, t, d))
    }
}
