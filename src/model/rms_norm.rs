//! RMSNorm from differentiable ops: `y = x / sqrt(mean(x², last dim) + eps) · w`.
//!
//! Shapes: `x: (…, hidden)`, `w: (hidden,)` → `(…, hidden)`. Not candle's fused `rms_norm`
//! (which `candle_nn::RmsNorm::forward` picks for contiguous input): that op has no backward
//! and silently stops every gradient upstream of it.

use candle_core::{D, Result, Tensor};
use candle_nn::VarBuilder;

/// Root-mean-square layer norm with a learned scale.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Read `{prefix}.weight` `(hidden,)` from `vb`.
    pub fn new(vb: VarBuilder, hidden: usize, eps: f64) -> Result<Self> {
        Ok(RmsNorm {
            weight: vb.get(hidden, "weight")?,
            eps,
        })
    }

    /// The learned scale `(hidden,)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The epsilon added to the mean square.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// `x: (…, hidden)` → `(…, hidden)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean_sq = x.sqr()?.mean_keepdim(D::Minus1)?;
        let inv_rms = (mean_sq + self.eps)?.sqrt()?.recip()?;
        x.broadcast_mul(&inv_rms)?.broadcast_mul(&self.weight)
    }
}
