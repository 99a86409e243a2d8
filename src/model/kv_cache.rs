//! The explicit key/value cache for generation.
//!
//! Per layer it holds keys and values after RoPE and before the grouped-query repeat,
//! `(b, num_kv_heads, t_past, head_dim)`, plus, per row, which of the `t_past` cached
//! positions are real tokens (left padding is not) and how many real tokens the row has
//! (the next token's RoPE position). The cache is for inference: stored tensors are
//! detached, so no autograd graph outlives a step. Training and scoring run without one.

use candle_core::{Result, Tensor};

/// Keys, values and padding state of the tokens seen so far.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    key_mask: Vec<Vec<bool>>,
    real_counts: Vec<u32>,
}

impl KvCache {
    /// An empty cache for `batch` rows of a model with `num_layers` layers.
    pub fn new(num_layers: usize, batch: usize) -> Self {
        KvCache {
            layers: vec![None; num_layers],
            key_mask: vec![Vec::new(); batch],
            real_counts: vec![0; batch],
        }
    }

    /// Rows in the batch.
    pub fn batch_size(&self) -> usize {
        self.real_counts.len()
    }

    /// Cached positions per row (padding included).
    pub fn len(&self) -> usize {
        self.key_mask.first().map_or(0, Vec::len)
    }

    /// True before the first forward.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which cached positions of each row are real tokens: `b` rows of `len()` flags.
    pub fn key_mask(&self) -> &[Vec<bool>] {
        &self.key_mask
    }

    /// Real tokens seen per row (the RoPE position of each row's next token).
    pub fn real_counts(&self) -> &[u32] {
        &self.real_counts
    }

    /// Append one layer's new keys and values `(b, kv_heads, t_new, d)`; returns the full
    /// `(b, kv_heads, t_past + t_new, d)` keys and values.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (k, v) = match &self.layers[layer] {
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 2)?, Tensor::cat(&[pv, v], 2)?),
            None => (k.clone(), v.clone()),
        };
        self.layers[layer] = Some((k.detach(), v.detach()));
        Ok((k, v))
    }

    /// Record the padding flags of a chunk after every layer has appended it.
    pub(crate) fn advance(&mut self, mask: &[Vec<bool>]) {
        for ((keys, count), new) in self
            .key_mask
            .iter_mut()
            .zip(&mut self.real_counts)
            .zip(mask)
        {
            keys.extend_from_slice(new);
            *count += new.iter().filter(|m| **m).count() as u32;
        }
    }
}
