//! LoRA adapters (peft-compatible names: `<module>.lora_A.weight`, `<module>.lora_B.weight`).
//!
//! For a linear layer `y = x·Wᵀ (+ b)` with `W: (out, in)`, an adapter adds
//! `scale · (x·Aᵀ)·Bᵀ` with `A: (rank, in)`, `B: (out, rank)`, `scale = alpha / rank`.
//! `B` starts at zero, so a fresh adapter leaves the model unchanged. With the adapter
//! disabled the layer is the base model: that is the DPO reference under LoRA.
//!
//! (Skeleton shared by the model and training work; the training helper fills it in.)

use candle_core::{Result, Tensor, Var};

/// One LoRA adapter attached to one linear layer.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// `(rank, in_features)`, trainable.
    pub a: Var,
    /// `(out_features, rank)`, trainable, zero at start.
    pub b: Var,
    /// `alpha / rank`.
    pub scale: f64,
}

impl LoraAdapter {
    /// The adapter's contribution for input `x: (…, in)`: `(…, out)`.
    pub fn delta(&self, x: &Tensor) -> Result<Tensor> {
        let h = x.broadcast_matmul(&self.a.as_tensor().t()?)?;
        h.broadcast_matmul(&self.b.as_tensor().t()?)? * self.scale
    }
}
