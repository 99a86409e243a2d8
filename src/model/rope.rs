//! Rotary position embeddings (the "rotate half" layout transformers' Llama uses), from
//! differentiable ops (candle's fused `rope` kernels have no backward).
//!
//! For head dimension `d`, `inv_freq[i] = theta^(-2i/d)` (in f32, like transformers) for `i < d/2`; a token at position
//! `p` has angles `p·inv_freq`, duplicated to length `d`. With `x: (b, heads, t, d)`:
//! `rope(x) = x·cos + rotate_half(x)·sin`, `rotate_half([x1, x2]) = [-x2, x1]`.
//! Positions are per row (`(b, t)`), so left-padded rows start at position 0 at their first
//! real token, exactly as when run alone.

use candle_core::{D, Device, Result, Tensor};

/// The RoPE frequencies of one model.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

/// `cos` and `sin` tables for one batch of positions, each `(b, 1, t, d)`.
#[derive(Debug, Clone)]
pub struct RopeTables {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    pub fn new(head_dim: usize, theta: f64) -> Self {
        let inv_freq = (0..head_dim / 2)
            .map(|i| 1.0 / (theta as f32).powf(2.0 * i as f32 / head_dim as f32))
            .collect();
        Rope { inv_freq }
    }

    /// Tables for `positions` (`b` rows of `t` positions each).
    pub fn tables(&self, positions: &[Vec<u32>], dev: &Device) -> Result<RopeTables> {
        let b = positions.len();
        let t = positions.first().map_or(0, Vec::len);
        let d = self.inv_freq.len() * 2;
        let mut cos = Vec::with_capacity(b * t * d);
        let mut sin = Vec::with_capacity(b * t * d);
        for row in positions {
            for &p in row {
                for _half in 0..2 {
                    for f in &self.inv_freq {
                        // f32 angles, as transformers computes them.
                        let angle = f64::from(p as f32 * f);
                        cos.push(angle.cos() as f32);
                        sin.push(angle.sin() as f32);
                    }
                }
            }
        }
        Ok(RopeTables {
            cos: Tensor::from_vec(cos, (b, 1, t, d), dev)?,
            sin: Tensor::from_vec(sin, (b, 1, t, d), dev)?,
        })
    }
}

impl RopeTables {
    /// `x: (b, heads, t, d)` → rotated, same shape.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let d = x.dim(D::Minus1)?;
        let x1 = x.narrow(D::Minus1, 0, d / 2)?;
        let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        x.broadcast_mul(&self.cos)? + rotated.broadcast_mul(&self.sin)?
    }
}
