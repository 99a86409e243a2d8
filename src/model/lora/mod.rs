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

use super::decoder::Decoder;

pub mod adapter;
pub mod config;
mod peft;
pub use adapter::LoraAdapter;
pub use config::{ALL_LINEAR, LoraConfig};
pub use peft::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, peft_name};

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
