//! A linear layer `y = x·Wᵀ + b`, with an optional LoRA adapter:
//! `y = x·Wᵀ + b + lora.delta(x)` when an adapter is attached and [`Adapters::On`].
//!
//! Shapes: `W: (out, in)`, `b: (out,)`, `x: (…, in)` → `y: (…, out)`. The weight is the
//! tensor of a `Var` when the model is built from a `VarMap` (full fine-tuning: the
//! optimiser's updates are seen by the next forward), or a plain tensor (frozen; no graph).
//! Running with [`Adapters::Off`] gives the base model: the DPO reference under LoRA.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::frozen_matmul;
use super::lora::adapter::LoraAdapter;

/// Whether attached LoRA adapters take part in a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Adapters {
    /// Adapters (where attached) add their delta: the policy.
    #[default]
    On,
    /// Adapters are skipped: the base model (the reference under LoRA).
    Off,
}

/// A linear layer with an optional LoRA hook.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    lora: Option<LoraAdapter>,
}

impl Linear {
    /// Read `{prefix}.weight` `(out, in)` and, if `bias`, `{prefix}.bias` `(out,)` from `vb`.
    pub fn new(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            lora: None,
        })
    }

    /// A layer over an existing weight (the tied `lm_head` shares the embedding).
    pub fn from_weight(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear {
            weight,
            bias,
            lora: None,
        }
    }

    /// The weight `(out, in)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `(out,)`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// `(in_features, out_features)`.
    pub fn dims(&self) -> (usize, usize) {
        let (out, inp) = self.weight.dims2().expect("a linear weight is 2-D");
        (inp, out)
    }

    /// Attach (or replace) the LoRA adapter.
    pub fn set_lora(&mut self, adapter: Option<LoraAdapter>) {
        self.lora = adapter;
    }

    /// The attached adapter, if any.
    pub fn lora(&self) -> Option<&LoraAdapter> {
        self.lora.as_ref()
    }

    /// `x: (…, in)` → `(…, out)`.
    ///
    /// The leading dimensions are flattened into one: a single `(rows, in)·(in, out)` matmul
    /// instead of candle's batched matmul over a broadcast weight, whose backward materialises
    /// one `(in, out)` weight gradient per batch row and then sums them.
    pub fn forward(&self, x: &Tensor, adapters: Adapters) -> Result<Tensor> {
        let (out_dim, in_dim) = self.weight.dims2()?;
        let mut out_shape = x.dims().to_vec();
        let Some(last) = out_shape.last_mut() else {
            candle_core::bail!("Linear::forward on a scalar");
        };
        *last = out_dim;
        let rows = x.elem_count() / in_dim.max(1);
        let x2 = x.reshape((rows, in_dim))?;
        let mut y = if frozen_matmul::applies(&x2, &self.weight) {
            frozen_matmul::frozen_matmul(&x2, &self.weight)?
        } else {
            x2.matmul(&self.weight.t()?)?
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let (Some(lora), Adapters::On) = (&self.lora, adapters) {
            y = (y + lora.delta(&x2)?)?;
        }
        y.reshape(out_shape)
    }
}
