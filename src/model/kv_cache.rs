//! The explicit key/value cache for generation.
//!
//! Per layer it holds keys and values after RoPE and before the grouped-query repeat,
//! `(b, num_kv_heads, t_past, head_dim)`, plus, per row, which of the `t_past` cached
//! positions are real tokens (left padding is not) and how many real tokens the row has
//! (the next token's RoPE position). The cache is for inference: stored tensors are
//! detached, so no autograd graph outlives a step. Training and scoring run without one.
//!
//! Storage: per layer one preallocated `(b, kv_heads, capacity, d)` buffer for keys and one
//! for values; a step writes its new positions in place (`slice_set`) and attention reads a
//! `narrow` view of the first `len` positions, so a step copies only its own keys and values
//! (the cache is never re-concatenated). A chunk that does not fit doubles the capacity
//! (one copy). [`KvCache::with_capacity`] sizes it for a whole generation up front.

use candle_core::{Result, Tensor};

/// Keys and values of one layer: buffers with room for `capacity` positions.
#[derive(Debug, Clone)]
struct LayerBuf {
    k: Tensor,
    v: Tensor,
    capacity: usize,
}

/// Keys, values and padding state of the tokens seen so far.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerBuf>>,
    key_mask: Vec<Vec<bool>>,
    real_counts: Vec<u32>,
    /// Positions to allocate at the first append (at least the chunk's length).
    initial_capacity: usize,
}

impl KvCache {
    /// An empty cache for `batch` rows of a model with `num_layers` layers.
    pub fn new(num_layers: usize, batch: usize) -> Self {
        Self::with_capacity(num_layers, batch, 0)
    }

    /// An empty cache that allocates room for `capacity` positions (padding included) at
    /// the first append, e.g. the padded prompt length plus the new tokens.
    pub fn with_capacity(num_layers: usize, batch: usize, capacity: usize) -> Self {
        KvCache {
            layers: vec![None; num_layers],
            key_mask: vec![Vec::new(); batch],
            real_counts: vec![0; batch],
            initial_capacity: capacity,
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
    /// The returned tensors are views of the cache (valid until the next append).
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let past = self.len();
        let total = past + k.dim(2)?;
        let buf = match self.layers[layer].take() {
            Some(buf) if buf.capacity >= total => buf,
            old => {
                let capacity = total.max(self.initial_capacity).max(2 * past);
                let (b, h, _, d) = k.dims4()?;
                let fresh = LayerBuf {
                    k: Tensor::zeros((b, h, capacity, d), k.dtype(), k.device())?,
                    v: Tensor::zeros((b, h, capacity, d), v.dtype(), v.device())?,
                    capacity,
                };
                if let Some(old) = old {
                    fresh
                        .k
                        .slice_set(&old.k.narrow(2, 0, past)?.contiguous()?, 2, 0)?;
                    fresh
                        .v
                        .slice_set(&old.v.narrow(2, 0, past)?.contiguous()?, 2, 0)?;
                }
                fresh
            }
        };
        buf.k.slice_set(&k.detach().contiguous()?, 2, past)?;
        buf.v.slice_set(&v.detach().contiguous()?, 2, past)?;
        let views = (buf.k.narrow(2, 0, total)?, buf.v.narrow(2, 0, total)?);
        self.layers[layer] = Some(buf);
        Ok(views)
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
