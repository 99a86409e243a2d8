//! Which layers get LoRA adapters and how large they are (peft's `LoraConfig` fields).

use anyhow::{Result, bail};

/// The target that selects every linear layer except the output head.
pub const ALL_LINEAR: &str = "all-linear";
/// The output head, never adapted by `all-linear` (as peft).
const OUTPUT_HEAD: &str = "lm_head";

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
