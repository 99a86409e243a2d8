//! The SwiGLU feed-forward block: `down(silu(gate(x)) · up(x))`.
//!
//! Shapes: `x: (b, t, hidden)` → gate/up `(b, t, intermediate)` → `(b, t, hidden)`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::config::ModelConfig;
use super::linear::{Adapters, Linear};

/// One feed-forward block.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    /// Read `{prefix}.{gate,up,down}_proj` from `vb` (prefix `model.layers.{i}.mlp`).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Mlp {
            gate_proj: Linear::new(vb.pp("gate_proj"), h, i, bias)?,
            up_proj: Linear::new(vb.pp("up_proj"), h, i, bias)?,
            down_proj: Linear::new(vb.pp("down_proj"), i, h, bias)?,
        })
    }

    /// `x: (b, t, hidden)` → `(b, t, hidden)`.
    pub fn forward(&self, x: &Tensor, adapters: Adapters) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x, adapters)?.silu()?;
        let up = self.up_proj.forward(x, adapters)?;
        self.down_proj.forward(&(gate * up)?, adapters)
    }
}
