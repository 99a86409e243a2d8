//! The Llama-family decoder (Llama, Mistral, Qwen2): embeddings, `num_layers` pre-norm
//! blocks (`x += attn(norm(x)); x += mlp(norm(x))`), a final RMSNorm and the LM head
//! (tied to the embeddings or not) — or, for a reward model, the `score` head `(1, hidden)`
//! (`*ForSequenceClassification`; `forward` then gives `(b, t, 1)`). Every op is
//! differentiable.
//!
//! Public API, shapes:
//! - [`Decoder::new`]`(cfg, vb)`: `vb` at the checkpoint root (`model.embed_tokens.weight`,
//!   `model.layers.{i}.…`, `model.norm.weight`, `lm_head.weight`). Built from a `VarMap`
//!   every weight is a trainable `Var`; built from plain tensors nothing is tracked.
//! - [`Decoder::forward`]`(batch, cache, adapters)`: a [`Batch`] of `b × t` ids →
//!   logits `(b, t, vocab)` f32, one row per input position (position `i` predicts token
//!   `i+1`). With a [`KvCache`] the batch continues the cached tokens.
//! - [`Decoder::hidden`] / [`Decoder::logits`]: the same split at the final norm
//!   (`(b, t, hidden)`), for callers that need logits at a few positions only.
//! - [`Decoder::linears_mut`]: every projection by module name, to attach LoRA adapters.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::Attention;
use super::batch::Batch;
use super::config::{Head, ModelConfig};
use super::kv_cache::KvCache;
use super::linear::{Adapters, Linear};
use super::mlp::Mlp;
use super::rms_norm::RmsNorm;
use super::rope::{Rope, RopeTables};

/// Added to attention scores a query may not see. Finite, so a row with nothing to see (a
/// padding query) gives a uniform softmax instead of NaN; `exp` of it underflows to 0.
const MASKED_SCORE: f32 = -1e9;

/// One pre-norm transformer block.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

/// The decoder; see the module docs.
#[derive(Debug, Clone)]
pub struct Decoder {
    cfg: ModelConfig,
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    device: Device,
}

impl Decoder {
    /// Build from `vb` at the checkpoint root; see the module docs for names.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let m = vb.pp("model");
        let embed_tokens = m
            .pp("embed_tokens")
            .get((cfg.vocab_size, cfg.hidden_size), "weight")?;
        let layers = (0..cfg.num_layers)
            .map(|i| {
                let l = m.pp("layers").pp(i);
                Ok(DecoderLayer {
                    input_layernorm: RmsNorm::new(
                        l.pp("input_layernorm"),
                        cfg.hidden_size,
                        cfg.rms_norm_eps,
                    )?,
                    self_attn: Attention::new(cfg, l.pp("self_attn"))?,
                    post_attention_layernorm: RmsNorm::new(
                        l.pp("post_attention_layernorm"),
                        cfg.hidden_size,
                        cfg.rms_norm_eps,
                    )?,
                    mlp: Mlp::new(cfg, l.pp("mlp"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(m.pp("norm"), cfg.hidden_size, cfg.rms_norm_eps)?;
        let lm_head = match cfg.head {
            Head::Score => Linear::new(vb.pp("score"), cfg.hidden_size, 1, false)?,
            Head::Lm if cfg.tie_word_embeddings => Linear::from_weight(embed_tokens.clone(), None),
            Head::Lm => Linear::new(vb.pp("lm_head"), cfg.hidden_size, cfg.vocab_size, false)?,
        };
        Ok(Decoder {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope: Rope::new(cfg.head_dim, cfg.rope_theta),
            device: vb.device().clone(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The blocks, in order.
    pub fn layers(&self) -> &[DecoderLayer] {
        &self.layers
    }

    /// The token embeddings `(vocab, hidden)`.
    pub fn embed_tokens(&self) -> &Tensor {
        &self.embed_tokens
    }

    /// The final norm.
    pub fn final_norm(&self) -> &RmsNorm {
        &self.norm
    }

    /// The head: vocabulary logits (the embeddings when tied), or a reward model's
    /// `score` `(1, hidden)` ([`Head::Score`]).
    pub fn lm_head(&self) -> &Linear {
        &self.lm_head
    }

    /// A fresh cache for `batch` rows.
    pub fn new_cache(&self, batch: usize) -> KvCache {
        KvCache::new(self.cfg.num_layers, batch)
    }

    /// A fresh cache for `batch` rows with room for `capacity` positions (no regrowth).
    pub fn new_cache_with_capacity(&self, batch: usize, capacity: usize) -> KvCache {
        KvCache::with_capacity(self.cfg.num_layers, batch, capacity)
    }

    /// Logits `(b, t, vocab)` for every position of `batch`.
    pub fn forward(
        &self,
        batch: &Batch,
        cache: Option<&mut KvCache>,
        adapters: Adapters,
    ) -> Result<Tensor> {
        let hidden = self.hidden(batch, cache, adapters)?;
        self.logits(&hidden, adapters)
    }

    /// Final-normed hidden states `(b, t, hidden)`.
    pub fn hidden(
        &self,
        batch: &Batch,
        mut cache: Option<&mut KvCache>,
        adapters: Adapters,
    ) -> Result<Tensor> {
        let (b, t) = (batch.batch_size(), batch.seq_len());
        if let Some(c) = cache.as_deref()
            && c.batch_size() != b
        {
            candle_core::bail!("KV cache has {} rows, batch has {b}", c.batch_size());
        }
        let (rope, mask) = self.context(batch, cache.as_deref())?;
        let ids = batch.ids_tensor(&self.device)?.flatten_all()?;
        let mut x =
            self.embed_tokens
                .index_select(&ids, 0)?
                .reshape((b, t, self.cfg.hidden_size))?;
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(&x)?;
            let cache_slot = cache.as_deref_mut().map(|c| (c, i));
            x = (x + layer
                .self_attn
                .forward(&h, &rope, &mask, cache_slot, adapters)?)?;
            let h = layer.post_attention_layernorm.forward(&x)?;
            x = (x + layer.mlp.forward(&h, adapters)?)?;
        }
        if let Some(c) = cache {
            c.advance(batch.mask());
        }
        self.norm.forward(&x)
    }

    /// `hidden: (…, hidden)` → logits `(…, vocab)`.
    pub fn logits(&self, hidden: &Tensor, adapters: Adapters) -> Result<Tensor> {
        self.lm_head.forward(hidden, adapters)
    }

    /// RoPE tables for each position and the additive mask `(b, 1, t, t_past + t)`.
    fn context(&self, batch: &Batch, cache: Option<&KvCache>) -> Result<(RopeTables, Tensor)> {
        let (b, t) = (batch.batch_size(), batch.seq_len());
        let t_past = cache.map_or(0, KvCache::len);
        let t_all = t_past + t;
        let mut positions = Vec::with_capacity(b);
        let mut mask = Vec::with_capacity(b * t * t_all);
        for r in 0..b {
            let mut count = cache.map_or(0, |c| c.real_counts()[r]);
            let row_mask = batch.mask()[r].as_slice();
            let mut pos = Vec::with_capacity(t);
            for &real in row_mask {
                pos.push(count);
                count += u32::from(real);
            }
            positions.push(pos);
            let past: &[bool] = cache.map_or(&[], |c| c.key_mask()[r].as_slice());
            for i in 0..t {
                for j in 0..t_all {
                    let key_real = if j < t_past {
                        past[j]
                    } else {
                        row_mask[j - t_past]
                    };
                    let visible = key_real && j <= t_past + i;
                    mask.push(if visible { 0.0 } else { MASKED_SCORE });
                }
            }
        }
        let rope = self.rope.tables(&positions, &self.device)?;
        let mask = Tensor::from_vec(mask, (b, 1, t, t_all), &self.device)?.to_dtype(DType::F32)?;
        Ok((rope, mask))
    }

    /// Every projection with its module name (`model.layers.0.self_attn.q_proj`, …,
    /// `model.layers.0.mlp.down_proj`); the LM head is not included.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            let a = format!("model.layers.{i}.self_attn");
            let m = format!("model.layers.{i}.mlp");
            out.push((format!("{a}.q_proj"), &mut l.self_attn.q_proj));
            out.push((format!("{a}.k_proj"), &mut l.self_attn.k_proj));
            out.push((format!("{a}.v_proj"), &mut l.self_attn.v_proj));
            out.push((format!("{a}.o_proj"), &mut l.self_attn.o_proj));
            out.push((format!("{m}.gate_proj"), &mut l.mlp.gate_proj));
            out.push((format!("{m}.up_proj"), &mut l.mlp.up_proj));
            out.push((format!("{m}.down_proj"), &mut l.mlp.down_proj));
        }
        out
    }
}
