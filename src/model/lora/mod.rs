//! LoRA adapters with peft-compatible names, init and files.
//!
//! For a linear layer `y = x·Wᵀ (+ b)` with `W: (out, in)`, an adapter adds
//! `scale · (x·Aᵀ)·Bᵀ` with `A: (rank, in)`, `B: (out, rank)`, `scale = alpha / rank`
//! (`alpha / √rank` with rsLoRA). `B` starts at zero, so a fresh adapter leaves the model
//! unchanged. Switching adapters off (the model's `Adapters::Off` forward) gives the base
//! model: that is the DPO reference under LoRA.
//!
//! * **Init** as peft's default (`init_lora_weights=True`): `A` Kaiming-uniform with
//!   `a = √5`, i.e. `U(−1/√in, 1/√in)`, `B = 0`. The values come from a ChaCha8 stream
//!   seeded by BLAKE3(`seed`, module name), so each adapter depends only on the seed and
//!   its module, not on how many other adapters exist or their order.
//! * **Targets** as peft's list form: a module matches a target `t` iff its name is `t`
//!   or ends with `.t`; `all-linear` matches every linear layer except `lm_head`.
//! * **Files** (peft layout, loadable by `PeftModel.from_pretrained`):
//!   `adapter_model.safetensors` with `base_model.model.<module>.lora_A.weight` and
//!   `…lora_B.weight`, and `adapter_config.json`.
//! * **Merge** for export: `W ← W + scale · B·A`, computed in f32, stored in `W`'s dtype.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use super::decoder::Decoder;

mod peft;
pub use peft::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, peft_name};

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

/// The target that selects every linear layer except the output head.
pub const ALL_LINEAR: &str = "all-linear";
/// The output head, never adapted by `all-linear` (as peft).
const OUTPUT_HEAD: &str = "lm_head";

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

/// Which layers get adapters and how large they are.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// `r`: inner dimension of the adapter.
    pub rank: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// Module names or suffixes (`q_proj`, `v_proj`, `self_attn.o_proj`), or `all-linear`.
    pub target_modules: Vec<String>,
    /// rsLoRA scaling `alpha/√rank` instead of `alpha/rank`.
    #[serde(default)]
    pub use_rslora: bool,
    /// Seed of the `A` initialisation.
    #[serde(default)]
    pub seed: u64,
}

impl LoraConfig {
    /// Check ranges; the message says what to change.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            bail!(crate::user_err!("lora.rank must be at least 1"));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            bail!(crate::user_err!(
                "lora.alpha must be a positive number, got {}",
                self.alpha
            ));
        }
        if self.target_modules.is_empty() {
            bail!(crate::user_err!(
                "lora.target_modules is empty: name the layers to adapt (e.g. [q_proj, v_proj])"
            ));
        }
        Ok(())
    }

    /// The factor applied to `B·A·x`.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// Whether the linear layer `module` (full dotted name) gets an adapter.
    pub fn targets(&self, module: &str) -> bool {
        self.target_modules.iter().any(|t| {
            if t == ALL_LINEAR {
                let last = module.rsplit('.').next().unwrap_or(module);
                return last != OUTPUT_HEAD;
            }
            module == t
                || module
                    .strip_suffix(t.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }
}

/// The adapters of one model, keyed by module name (`model.layers.0.self_attn.q_proj`).
#[derive(Debug, Clone)]
pub struct LoraSet {
    config: LoraConfig,
    adapters: BTreeMap<String, LoraAdapter>,
}

impl LoraSet {
    /// Fresh adapters for every `(module, in, out)` linear layer the config targets.
    /// It is an error when a target matches no layer (a typo would silently train nothing).
    pub fn init<'a>(
        config: LoraConfig,
        linears: impl IntoIterator<Item = (&'a str, usize, usize)>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let linears: Vec<_> = linears.into_iter().collect();
        for t in &config.target_modules {
            let one = LoraConfig {
                target_modules: vec![t.clone()],
                ..config.clone()
            };
            if !linears.iter().any(|(m, _, _)| one.targets(m)) {
                bail!(crate::user_err!(
                    "lora.target_modules: `{t}` matches no linear layer of the model"
                ));
            }
        }
        let mut adapters = BTreeMap::new();
        for (module, inp, out) in linears.into_iter().filter(|(m, _, _)| config.targets(m)) {
            adapters.insert(
                module.to_string(),
                LoraAdapter::init(module, inp, out, &config, dtype, device)?,
            );
        }
        Ok(Self { config, adapters })
    }

    /// Fresh adapters (see [`LoraSet::init`]) for the decoder's targeted projections,
    /// attached to them. The decoder's `Adapters::On` forward then uses them; `Off` is the
    /// base model.
    pub fn attach(config: LoraConfig, decoder: &mut Decoder, dtype: DType) -> Result<Self> {
        let device = decoder.device().clone();
        let dims: Vec<(String, usize, usize)> = decoder
            .linears_mut()
            .into_iter()
            .map(|(n, l)| (n, l.dims().0, l.dims().1))
            .collect();
        let set = Self::init(
            config,
            dims.iter().map(|(n, i, o)| (n.as_str(), *i, *o)),
            dtype,
            &device,
        )?;
        set.attach_to(decoder)?;
        Ok(set)
    }

    /// Attach these adapters (e.g. from [`LoraSet::load_peft`]) to the decoder's projections
    /// of the same names; an adapter whose module is missing or has other dimensions is an
    /// error. Projections without an adapter get none.
    pub fn attach_to(&self, decoder: &mut Decoder) -> Result<()> {
        let mut linears = decoder.linears_mut();
        for (module, ad) in &self.adapters {
            let Some((_, lin)) = linears.iter().find(|(n, _)| n == module) else {
                bail!(crate::user_err!(
                    "LoRA adapter for `{module}`, which the model does not have"
                ));
            };
            let (inp, out) = lin.dims();
            if ad.a.dims() != [ad.rank(), inp] || ad.b.dims() != [out, ad.rank()] {
                bail!(crate::user_err!(
                    "LoRA adapter for `{module}` has A {:?}, B {:?}; the layer is {out}×{inp}",
                    ad.a.dims(),
                    ad.b.dims()
                ));
            }
        }
        for (name, lin) in linears.iter_mut() {
            lin.set_lora(self.adapters.get(name.as_str()).cloned());
        }
        Ok(())
    }

    /// Merge every adapter into its base weight `<module>.weight` held as a `Var` in
    /// `varmap` (a model loaded trainable), for export with the model's own `save`.
    /// Detach the adapters afterwards (or run `Adapters::Off`), else they count twice.
    pub fn merge_into_varmap(&self, varmap: &VarMap) -> Result<()> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| crate::internal_err!("VarMap lock poisoned"))?;
        for (module, ad) in &self.adapters {
            let key = format!("{module}.weight");
            let var = data
                .get(&key)
                .with_context(|| format!("LoRA merge: no trainable base weight {key}"))?;
            var.set(&ad.merged_weight(var.as_tensor())?)?;
        }
        Ok(())
    }

    /// The config the set was made with.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The adapter of `module`, if it has one.
    pub fn get(&self, module: &str) -> Option<&LoraAdapter> {
        self.adapters.get(module)
    }

    /// `(module, adapter)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &LoraAdapter)> {
        self.adapters.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The trainable variables under their peft names, in name order.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::with_capacity(2 * self.adapters.len());
        for (module, ad) in &self.adapters {
            out.push((peft_name(module, "lora_A"), ad.a.clone()));
            out.push((peft_name(module, "lora_B"), ad.b.clone()));
        }
        out
    }

    /// Replace each targeted `<module>.weight` in `weights` by its merged weight.
    /// Every adapted module must have its weight in the map.
    pub fn merge_into(&self, weights: &mut BTreeMap<String, Tensor>) -> Result<()> {
        for (module, ad) in &self.adapters {
            let key = format!("{module}.weight");
            let w = weights
                .get(&key)
                .with_context(|| format!("LoRA merge: no base weight {key}"))?;
            let merged = ad
                .merged_weight(w)
                .with_context(|| format!("LoRA merge of {module}"))?;
            weights.insert(key, merged);
        }
        Ok(())
    }
}
