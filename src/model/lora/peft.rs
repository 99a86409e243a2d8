//! LoRA adapters in peft's on-disk layout (loadable by `PeftModel.from_pretrained`).
//!
//! ```text
//! adapter_model.safetensors   base_model.model.<module>.lora_A.weight  (rank, in)
//!                             base_model.model.<module>.lora_B.weight  (out, rank)
//!                             metadata {"format": "pt"}
//! adapter_config.json         peft_type LORA, r, lora_alpha, target_modules, …
//! ```
//!
//! Checked against peft 0.21 by `scripts/check_lora_peft.py`: peft loads what scir
//! writes and gives the same logits (within 1e-7), merged or not.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor, Var};

use super::{ALL_LINEAR, LoraAdapter, LoraConfig, LoraSet};

/// peft's file names inside an adapter directory.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// peft's adapter config file name.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// Prefix peft puts before module names in saved adapter tensors.
const PEFT_PREFIX: &str = "base_model.model.";

impl LoraSet {
    /// Write `adapter_model.safetensors` and `adapter_config.json` into `dir` (created).
    pub fn save_peft(&self, dir: &Path, base_model_name_or_path: &str) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tensors: BTreeMap<String, Tensor> = self
            .named_vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        let weights = dir.join(ADAPTER_WEIGHTS_FILE);
        let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(tensors.iter(), Some(meta), &weights)
            .with_context(|| format!("writing {}", weights.display()))?;
        let config = peft_config_json(&self.config, base_model_name_or_path);
        let path = dir.join(ADAPTER_CONFIG_FILE);
        let text = serde_json::to_string_pretty(&config)? + "\n";
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Read a peft LoRA adapter directory (as written by peft or [`LoraSet::save_peft`]).
    pub fn load_peft(dir: &Path, device: &Device) -> Result<Self> {
        let config = read_peft_config(&dir.join(ADAPTER_CONFIG_FILE))?;
        let path = dir.join(ADAPTER_WEIGHTS_FILE);
        let tensors = candle_core::safetensors::load(&path, device)
            .with_context(|| format!("{}: cannot read the adapter weights", path.display()))?;
        let mut parts: BTreeMap<String, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
        for (name, t) in tensors {
            let (module, which) = parse_peft_name(&name)
                .with_context(|| format!("{}: unexpected tensor {name}", path.display()))?;
            let slot = parts.entry(module.to_string()).or_default();
            if which == "lora_A" {
                slot.0 = Some(t)
            } else {
                slot.1 = Some(t)
            }
        }
        let mut adapters = BTreeMap::new();
        for (module, (a, b)) in parts {
            let (Some(a), Some(b)) = (a, b) else {
                bail!(crate::user_err!(
                    "{}: {module} lacks lora_A or lora_B",
                    path.display()
                ));
            };
            if a.rank() != 2
                || b.rank() != 2
                || a.dims()[0] != config.rank
                || b.dims()[1] != config.rank
            {
                bail!(crate::user_err!(
                    "{}: {module} has shapes {:?} and {:?}, not rank r = {}",
                    path.display(),
                    a.dims(),
                    b.dims(),
                    config.rank
                ));
            }
            let ad = LoraAdapter {
                a: Var::from_tensor(&a)?,
                b: Var::from_tensor(&b)?,
                scale: config.scale(),
            };
            adapters.insert(module, ad);
        }
        Ok(Self { config, adapters })
    }
}

/// `base_model.model.<module>.<which>.weight`.
pub fn peft_name(module: &str, which: &str) -> String {
    format!("{PEFT_PREFIX}{module}.{which}.weight")
}

/// `(module, "lora_A" | "lora_B")` from a peft tensor name.
fn parse_peft_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(PEFT_PREFIX)?.strip_suffix(".weight")?;
    let (module, which) = rest.rsplit_once('.')?;
    matches!(which, "lora_A" | "lora_B").then_some((module, which))
}

/// The `adapter_config.json` peft expects for a plain LoRA adapter.
fn peft_config_json(cfg: &LoraConfig, base: &str) -> serde_json::Value {
    let mut targets = cfg.target_modules.clone();
    targets.sort();
    let target_modules = if targets.iter().any(|t| t == ALL_LINEAR) {
        serde_json::json!(ALL_LINEAR)
    } else {
        serde_json::json!(targets)
    };
    serde_json::json!({
        "alpha_pattern": {},
        "base_model_name_or_path": base,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": cfg.alpha,
        "lora_dropout": 0.0,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": cfg.rank,
        "rank_pattern": {},
        "revision": null,
        "target_modules": target_modules,
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": cfg.use_rslora,
    })
}

/// The parts of a peft `adapter_config.json` scir uses; refuses what it cannot honour.
fn read_peft_config(path: &Path) -> Result<LoraConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    let field = |k: &str| v.get(k).filter(|x| !x.is_null());
    if field("peft_type").and_then(|x| x.as_str()) != Some("LORA") {
        bail!(crate::user_err!(
            "{}: peft_type is not \"LORA\"; only LoRA adapters are supported",
            path.display()
        ));
    }
    for unsupported in ["use_dora"] {
        if field(unsupported).and_then(|x| x.as_bool()) == Some(true) {
            bail!(crate::user_err!(
                "{}: {unsupported} = true is not supported",
                path.display()
            ));
        }
    }
    for pattern in ["rank_pattern", "alpha_pattern"] {
        if field(pattern)
            .and_then(|x| x.as_object())
            .is_some_and(|o| !o.is_empty())
        {
            bail!(crate::user_err!(
                "{}: per-module {pattern} is not supported",
                path.display()
            ));
        }
    }
    let rank = field("r")
        .and_then(|x| x.as_u64())
        .with_context(|| format!("{}: no integer `r`", path.display()))?;
    let alpha = field("lora_alpha")
        .and_then(|x| x.as_f64())
        .with_context(|| format!("{}: no number `lora_alpha`", path.display()))?;
    let target_modules = match field("target_modules") {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => bail!(crate::user_err!("{}: no `target_modules`", path.display())),
    };
    let use_rslora = field("use_rslora")
        .and_then(|x| x.as_bool())
        .unwrap_or(false);
    let cfg = LoraConfig {
        rank: rank as usize,
        alpha,
        target_modules,
        use_rslora,
        seed: 0,
    };
    cfg.validate()
        .with_context(|| format!("{}", path.display()))?;
    Ok(cfg)
}
