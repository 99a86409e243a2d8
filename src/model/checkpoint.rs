//! Hugging Face checkpoint directories ↔ a [`Model`] (decoder + weights + text).
//!
//! On disk (read and written): `config.json`, `model.safetensors` (or shards listed by
//! `model.safetensors.index.json`'s `weight_map`), `tokenizer.json`, and optionally
//! `tokenizer_config.json`. Tensors may be f32, f16 or bf16; they become f32. With
//! [`Weights::Trainable`] every tensor is a `Var` in the model's `VarMap`, inserted under
//! its checkpoint name *before* the decoder is built, so the decoder picks them up (never a
//! fresh random one); with [`Weights::Frozen`] they are plain tensors and build no graph.
//! A tied `lm_head.weight` on disk is ignored (transformers ties it too). Saving writes the
//! same layout in f32 (safetensors metadata `format: pt`), each file through a temporary
//! name and a rename.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use tokenizers::Tokenizer;

use super::config::{Head, ModelConfig, Preset};
use super::decoder::Decoder;
use super::params::{init_tensor, param_specs};
use super::tokenizer::Text;
use crate::user_err;

const CONFIG_FILE: &str = "config.json";
const WEIGHTS_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";
const TOKENIZER_FILE: &str = "tokenizer.json";
const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// Tensors older checkpoints carry that are recomputed, not learned.
const IGNORED_SUFFIX: &str = ".rotary_emb.inv_freq";

/// Whether loaded weights are trainable `Var`s or frozen tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    Trainable,
    Frozen,
}

/// A loaded model: the decoder, its named weights and its text side.
pub struct Model {
    pub decoder: Decoder,
    /// Trainable weights by checkpoint name (empty when frozen).
    pub varmap: VarMap,
    pub text: Text,
    /// Weights by checkpoint name, in checkpoint order (share storage with the `Var`s).
    tensors: Vec<(String, Tensor)>,
    /// The `config.json` object, kept so saving preserves fields scir does not read.
    raw_config: Value,
    /// The on-disk dtype(s), e.g. `"bf16"` (`"f32"` for models made from scratch).
    pub source_dtype: String,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", self.config())
            .field("parameters", &self.param_count())
            .field("trainable_vars", &self.varmap.all_vars().len())
            .field("source_dtype", &self.source_dtype)
            .finish_non_exhaustive()
    }
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| user_err!("{}: cannot read ({e})", path.display()))?;
    Ok(serde_json::from_str(&s)
        .map_err(|e| user_err!("{}: not valid JSON ({e})", path.display()))?)
}

/// The weight files of `dir`: the single file, or the shards its index names (sorted).
fn weight_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(INDEX_FILE);
    if !index.is_file() {
        return Err(user_err!(
            "{}: no weights: neither {WEIGHTS_FILE} nor {INDEX_FILE} is there",
            dir.display()
        )
        .into());
    }
    let v = read_json(&index)?;
    let map = v
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| user_err!("{}: has no \"weight_map\" object", index.display()))?;
    let files: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        return Err(user_err!(
            "{}: missing (listed in {})",
            missing.display(),
            index.display()
        )
        .into());
    }
    Ok(paths)
}

fn dtype_name(d: Dtype) -> Option<(&'static str, DType)> {
    match d {
        Dtype::F32 => Some(("f32", DType::F32)),
        Dtype::F16 => Some(("f16", DType::F16)),
        Dtype::BF16 => Some(("bf16", DType::BF16)),
        _ => None,
    }
}

/// Read every tensor of `files` as f32, checked against the config's expected shapes.
fn read_tensors(
    files: &[PathBuf],
    cfg: &ModelConfig,
    dev: &Device,
) -> anyhow::Result<(HashMap<String, Tensor>, BTreeSet<&'static str>)> {
    let expected: HashMap<String, Vec<usize>> = param_specs(cfg)
        .into_iter()
        .map(|s| (s.name, s.shape))
        .collect();
    let mut out = HashMap::new();
    let mut dtypes = BTreeSet::new();
    for file in files {
        let bytes =
            std::fs::read(file).map_err(|e| user_err!("{}: cannot read ({e})", file.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| user_err!("{}: not a valid safetensors file ({e})", file.display()))?;
        for (name, view) in st.tensors() {
            let skip = name.ends_with(IGNORED_SUFFIX)
                || (cfg.tie_word_embeddings && name == "lm_head.weight");
            if skip {
                continue;
            }
            let Some(shape) = expected.get(&name) else {
                return Err(user_err!(
                    "{}: unexpected tensor {name:?} for a {} config; do {CONFIG_FILE} and the weights belong together?",
                    file.display(),
                    cfg.arch.model_type()
                )
                .into());
            };
            let (dname, dtype) = dtype_name(view.dtype()).ok_or_else(|| {
                user_err!(
                    "{}: tensor {name:?} has dtype {:?}; scir loads f32, f16 and bf16 weights",
                    file.display(),
                    view.dtype()
                )
            })?;
            if view.shape() != shape.as_slice() {
                return Err(user_err!(
                    "{}: tensor {name:?} has shape {:?}, {CONFIG_FILE} implies {shape:?}",
                    file.display(),
                    view.shape()
                )
                .into());
            }
            dtypes.insert(dname);
            let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), dev)?
                .to_dtype(DType::F32)?;
            out.insert(name, t);
        }
    }
    if let Some(missing) = param_specs(cfg).iter().find(|s| !out.contains_key(&s.name)) {
        let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        return Err(user_err!("{}: tensor {:?} is missing", shown.join(", "), missing.name).into());
    }
    Ok((out, dtypes))
}

impl Model {
    /// Load a Hugging Face model directory; see the module docs.
    pub fn load(dir: &Path, weights: Weights, dev: &Device) -> anyhow::Result<Self> {
        if !dir.is_dir() {
            return Err(user_err!(
                "{}: not a directory; --model takes a Hugging Face model directory",
                dir.display()
            )
            .into());
        }
        let raw_config = read_json(&dir.join(CONFIG_FILE))?;
        let cfg = ModelConfig::from_json(&raw_config)
            .map_err(|msg| user_err!("{}: {msg}", dir.join(CONFIG_FILE).display()))?;
        let text = Text::load(dir, &cfg)?;
        let (mut tensors, dtypes) = read_tensors(&weight_files(dir)?, &cfg, dev)?;
        let ordered: Vec<(String, Tensor)> = param_specs(&cfg)
            .into_iter()
            .map(|s| {
                let t = tensors
                    .remove(&s.name)
                    .expect("read_tensors checked presence");
                (s.name, t)
            })
            .collect();
        let source_dtype = dtypes.into_iter().collect::<Vec<_>>().join("+");
        Self::assemble(cfg, text, ordered, weights, raw_config, source_dtype, dev)
    }

    /// A model of `preset` size for `tokenizer`, initialised from `seed` (deterministic).
    /// `tokenizer_config` is a `tokenizer_config.json` object (its `bos_token`/`eos_token`
    /// become the config's ids; it may carry a `chat_template`); it is saved with the model.
    pub fn from_scratch(
        tokenizer: Tokenizer,
        tokenizer_config: Value,
        preset: Preset,
        seed: u64,
        dev: &Device,
    ) -> anyhow::Result<Self> {
        let vocab = tokenizer.get_vocab_size(true);
        let probe = preset.config(vocab, None, vec![]);
        let probe_text = Text::new(tokenizer.clone(), tokenizer_config.clone(), &probe)
            .map_err(|m| user_err!("tokenizer: {m}"))?;
        let eos = probe_text.eos_id().into_iter().collect();
        let bos = probe_text
            .bos_token()
            .and_then(|b| tokenizer.token_to_id(b));
        Self::from_config(
            preset.config(vocab, bos, eos),
            tokenizer,
            tokenizer_config,
            seed,
            dev,
        )
    }

    /// A model with `cfg` for `tokenizer`, initialised from `seed` (deterministic).
    pub fn from_config(
        cfg: ModelConfig,
        tokenizer: Tokenizer,
        tokenizer_config: Value,
        seed: u64,
        dev: &Device,
    ) -> anyhow::Result<Self> {
        cfg.validate().map_err(|m| user_err!("model config: {m}"))?;
        let text = Text::new(tokenizer, tokenizer_config, &cfg)
            .map_err(|m| user_err!("tokenizer: {m}"))?;
        let tensors = param_specs(&cfg)
            .iter()
            .map(|s| Ok((s.name.clone(), init_tensor(s, seed, dev)?)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let raw = cfg.to_hf_json();
        Self::assemble(
            cfg,
            text,
            tensors,
            Weights::Trainable,
            raw,
            "f32".into(),
            dev,
        )
    }

    fn assemble(
        cfg: ModelConfig,
        text: Text,
        tensors: Vec<(String, Tensor)>,
        weights: Weights,
        raw_config: Value,
        source_dtype: String,
        dev: &Device,
    ) -> anyhow::Result<Self> {
        let varmap = VarMap::new();
        let (vb, tensors) = match weights {
            Weights::Trainable => {
                let mut data = varmap.data().lock().expect("a fresh VarMap lock");
                let mut shared = Vec::with_capacity(tensors.len());
                for (name, t) in tensors {
                    let var = Var::from_tensor(&t)?;
                    shared.push((name.clone(), var.as_tensor().clone()));
                    data.insert(name, var);
                }
                drop(data);
                (VarBuilder::from_varmap(&varmap, DType::F32, dev), shared)
            }
            Weights::Frozen => {
                let map: HashMap<String, Tensor> = tensors.iter().cloned().collect();
                (VarBuilder::from_tensors(map, DType::F32, dev), tensors)
            }
        };
        let decoder = Decoder::new(&cfg, vb)?;
        Ok(Model {
            decoder,
            varmap,
            text,
            tensors,
            raw_config,
            source_dtype,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        self.decoder.config()
    }

    /// Weights by checkpoint name, in checkpoint order.
    pub fn tensors(&self) -> &[(String, Tensor)] {
        &self.tensors
    }

    /// A frozen deep copy of the current weights (plain tensors, no graph): e.g. the DPO
    /// reference under full fine-tuning. Later optimiser steps on `self` do not change it.
    pub fn frozen_copy(&self) -> anyhow::Result<Model> {
        let tensors = self
            .tensors
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.copy()?)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let dev = self.decoder.device().clone();
        Self::assemble(
            self.config().clone(),
            self.text.clone(),
            tensors,
            Weights::Frozen,
            self.raw_config.clone(),
            self.source_dtype.clone(),
            &dev,
        )
    }

    /// This model's decoder under a fresh `score` head (`(1, hidden)`, normal(0, 0.02) from
    /// `seed`): the start of a reward model, saved as `*ForSequenceClassification` with one
    /// label and `pad_token_id`. The LM head is dropped; `weights` says whether the result
    /// trains.
    pub fn with_score_head(&self, seed: u64, weights: Weights) -> anyhow::Result<Model> {
        if self.config().head != Head::Lm {
            anyhow::bail!(user_err!("this checkpoint already is a reward model"));
        }
        let cfg = ModelConfig {
            head: Head::Score,
            ..self.config().clone()
        };
        let specs = param_specs(&cfg);
        let kept: HashMap<&str, &Tensor> =
            self.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let dev = self.decoder.device().clone();
        let tensors = specs
            .iter()
            .map(|s| match kept.get(s.name.as_str()) {
                Some(t) => Ok((s.name.clone(), t.copy()?)),
                None => Ok((s.name.clone(), init_tensor(s, seed, &dev)?)),
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut raw = self.raw_config.clone();
        let fresh = cfg.to_hf_json();
        if let Some(obj) = raw.as_object_mut() {
            for key in ["architectures", "id2label", "label2id"] {
                obj.insert(key.into(), fresh[key].clone());
            }
            obj.insert("pad_token_id".into(), Value::from(self.text.pad_id()));
        }
        Self::assemble(
            cfg,
            self.text.clone(),
            tensors,
            weights,
            raw,
            self.source_dtype.clone(),
            &dev,
        )
    }

    /// Replace each LoRA-adapted projection's weight by its merged weight `W + scale·B·A`
    /// in the weights [`save`](Self::save) writes. For a model loaded [`Weights::Frozen`]
    /// (the LoRA case): the decoder keeps running the base weights with the adapters.
    pub fn merge_lora(&mut self, set: &crate::model::lora::LoraSet) -> anyhow::Result<()> {
        let mut merged: BTreeMap<String, Tensor> = self.tensors.iter().cloned().collect();
        set.merge_into(&mut merged)?;
        for (name, t) in &mut self.tensors {
            if let Some(m) = merged.remove(name.as_str()) {
                *t = m;
            }
        }
        Ok(())
    }

    /// Number of parameters (tied embeddings counted once).
    pub fn param_count(&self) -> usize {
        self.tensors.iter().map(|(_, t)| t.elem_count()).sum()
    }

    /// Write the checkpoint to `dir` (created if needed) in Hugging Face layout, f32.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| user_err!("{}: cannot create ({e})", dir.display()))?;
        let mut config = self.raw_config.clone();
        if let Some(obj) = config.as_object_mut() {
            let key = if obj.contains_key("dtype") {
                "dtype"
            } else {
                "torch_dtype"
            };
            obj.insert(key.into(), Value::String("float32".into()));
        }
        write_atomic(
            &dir.join(CONFIG_FILE),
            serde_json::to_string_pretty(&config)?.as_bytes(),
        )?;
        let named: BTreeMap<&str, &Tensor> =
            self.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        let bytes = safetensors::serialize(named, Some(meta))?;
        write_atomic(&dir.join(WEIGHTS_FILE), &bytes)?;
        let tok = self
            .text
            .tokenizer()
            .to_string(true)
            .map_err(|e| anyhow::anyhow!("cannot serialise the tokenizer: {e}"))?;
        write_atomic(&dir.join(TOKENIZER_FILE), tok.as_bytes())?;
        let tc = serde_json::to_string_pretty(self.text.tokenizer_config())?;
        write_atomic(&dir.join(TOKENIZER_CONFIG_FILE), tc.as_bytes())?;
        Ok(())
    }
}

/// Write `bytes` to `path` through a temporary file in the same directory and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    if crate::failpoint::check(crate::failpoint::site::CHECKPOINT_FILE) {
        // Crash test: leave a half-written file behind, then stop.
        let _ = std::fs::write(&tmp, &bytes[..bytes.len() / 2]);
        crate::failpoint::stop(crate::failpoint::site::CHECKPOINT_FILE);
    }
    std::fs::write(&tmp, bytes)
        .map_err(|e| anyhow::anyhow!("{}: cannot write ({e})", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("{}: cannot rename into place ({e})", path.display()))?;
    Ok(())
}
