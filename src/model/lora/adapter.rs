//! One LoRA adapter (`A`, `B`, scale) on one linear layer: its seeded initialisation, its
//! contribution `scale·B·A·x`, and the merged weight.

use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use super::config::LoraConfig;

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
    /// A fresh adapter for a `(out, in)` layer named `module`: `A` peft-Kaiming-uniform
    /// seeded by `(seed, module)`, `B` zero.
    pub fn init(
        module: &str,
        in_features: usize,
        out_features: usize,
        cfg: &LoraConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let rank = cfg.rank;
        let bound = 1.0 / (in_features as f64).sqrt();
        let mut rng = module_rng(cfg.seed, module);
        let values: Vec<f32> = (0..rank * in_features)
            .map(|_| ((2.0 * unit(&mut rng) - 1.0) * bound) as f32)
            .collect();
        let a = Tensor::from_vec(values, (rank, in_features), device)?.to_dtype(dtype)?;
        let b = Tensor::zeros((out_features, rank), dtype, device)?;
        Ok(Self {
            a: Var::from_tensor(&a)?,
            b: Var::from_tensor(&b)?,
            scale: cfg.scale(),
        })
    }

    /// The adapter's contribution for input `x: (…, in)`: `(…, out)`, in `x`'s dtype.
    pub fn delta(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = self.a.dtype();
        let xa = if x.dtype() == dtype {
            x.clone()
        } else {
            x.to_dtype(dtype)?
        };
        let h = xa.broadcast_matmul(&self.a.as_tensor().t()?)?;
        let y = (h.broadcast_matmul(&self.b.as_tensor().t()?)? * self.scale)?;
        if y.dtype() == x.dtype() {
            Ok(y)
        } else {
            y.to_dtype(x.dtype())
        }
    }

    /// `rank` (rows of `A`).
    pub fn rank(&self) -> usize {
        self.a.dims()[0]
    }

    /// `W + scale·B·A` for the base weight `w: (out, in)`, in `w`'s dtype.
    pub fn merged_weight(&self, w: &Tensor) -> Result<Tensor> {
        let a = self.a.as_tensor().to_dtype(DType::F32)?;
        let b = self.b.as_tensor().to_dtype(DType::F32)?;
        let delta = (b.matmul(&a)? * self.scale)?;
        if delta.shape() != w.shape() {
            bail!(
                "LoRA merge: adapter gives {:?}, the base weight is {:?}",
                delta.shape(),
                w.shape()
            );
        }
        Ok((w.to_dtype(DType::F32)? + delta)?.to_dtype(w.dtype())?)
    }
}

/// A uniform number in `[0, 1)` with 24 random bits (exact in f32).
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u32() >> 8) as f64 / (1u32 << 24) as f64
}

/// The ChaCha8 stream for one module's adapter.
fn module_rng(seed: u64, module: &str) -> ChaCha8Rng {
    let mut h = blake3::Hasher::new();
    h.update(b"scir.lora.init.v1\0");
    h.update(&seed.to_le_bytes());
    h.update(module.as_bytes());
    ChaCha8Rng::from_seed(*h.finalize().as_bytes())
}
