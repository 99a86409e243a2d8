//! Model configuration: Hugging Face `config.json` at the edge, a validated [`ModelConfig`]
//! inside.
//!
//! `config.json` files carry dozens of fields that do not change the maths (`use_cache`,
//! `initializer_range`, `transformers_version`, …), so [`HfConfig`] deliberately accepts
//! unknown fields; every field that *does* change the maths is parsed and validated, and a
//! value scir cannot honour (rope scaling, sliding windows, other activations) is rejected
//! with a message naming the file. `rope_theta` is read at the top level and inside
//! `rope_parameters` (newer transformers writes it there).

use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::user_err;

/// RoPE base used by transformers when a config names none.
const DEFAULT_ROPE_THETA: f64 = 10_000.0;
/// RMSNorm epsilon used by transformers' Llama when a config names none.
const DEFAULT_RMS_NORM_EPS: f64 = 1e-6;
/// Largest size of any one dimension a config may give (vocabulary, widths, heads): a
/// corrupt or hostile `config.json` or GGUF header fails here, before anything is sized
/// from it.
const MAX_SIZE: usize = 1 << 24;
/// Most layers a config may give (the deepest open models have about 130).
const MAX_LAYERS: usize = 1 << 10;

/// The decoder families scir implements (one code path, different biases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Mistral,
    Qwen2,
}

impl Arch {
    /// The `model_type` string transformers uses.
    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
        }
    }

    /// The `architectures[0]` string transformers uses for this family with `head`.
    pub fn class_name(self, head: Head) -> String {
        let family = match self {
            Arch::Llama => "Llama",
            Arch::Mistral => "Mistral",
            Arch::Qwen2 => "Qwen2",
        };
        format!("{family}{}", head.class_suffix())
    }

    fn from_model_type(s: &str) -> Option<Arch> {
        match s {
            "llama" => Some(Arch::Llama),
            "mistral" => Some(Arch::Mistral),
            "qwen2" => Some(Arch::Qwen2),
            _ => None,
        }
    }
}

/// What sits on the decoder's final-normed hidden states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Head {
    /// `lm_head.weight` `(vocab, hidden)` (or the tied embedding): next-token logits, as
    /// `*ForCausalLM`.
    #[default]
    Lm,
    /// `score.weight` `(1, hidden)`, no bias: one scalar per position, as
    /// `*ForSequenceClassification` with one label (a Bradley–Terry reward model; the
    /// reward of a sequence is the scalar at its last token).
    Score,
}

impl Head {
    const SCORE_SUFFIX: &'static str = "ForSequenceClassification";

    fn class_suffix(self) -> &'static str {
        match self {
            Head::Lm => "ForCausalLM",
            Head::Score => Self::SCORE_SUFFIX,
        }
    }

    /// The head `architectures[0]` names (`*ForSequenceClassification` → a score head with
    /// `labels` outputs, which must be one).
    fn of(archs: &[String], labels: Option<usize>) -> Result<Head, String> {
        let Some(class) = archs.first().filter(|a| a.ends_with(Self::SCORE_SUFFIX)) else {
            return Ok(Head::Lm);
        };
        match labels {
            Some(1) => Ok(Head::Score),
            n => Err(format!(
                "{class} with {} labels: scir reads reward models with one label (a scalar \
                 score; set num_labels 1)",
                n.map_or("the default 2".to_string(), |n| n.to_string())
            )),
        }
    }
}

/// One or several token ids (`eos_token_id` may be either in `config.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

/// `rope_parameters` / `rope_scaling` objects.
#[derive(Debug, Clone, Deserialize)]
struct RopeParams {
    rope_type: Option<String>,
    #[serde(rename = "type")]
    legacy_type: Option<String>,
    rope_theta: Option<f64>,
}

/// The fields of a Hugging Face `config.json` that change the maths (unknown fields ignored,
/// see the module docs).
#[derive(Debug, Clone, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    hidden_act: Option<String>,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<RopeParams>,
    rope_parameters: Option<RopeParams>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    layer_types: Option<Vec<String>>,
    bos_token_id: Option<OneOrMany>,
    eos_token_id: Option<OneOrMany>,
    num_labels: Option<usize>,
    id2label: Option<serde_json::Map<String, Value>>,
}

/// A validated decoder configuration. Invariants: `num_heads % num_kv_heads == 0`,
/// `head_dim` even, all sizes positive.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v projections (Qwen2 always; Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama with `attention_bias`).
    pub o_bias: bool,
    /// Biases on the MLP projections (Llama with `mlp_bias`).
    pub mlp_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub head: Head,
}

impl ModelConfig {
    /// Read and validate `config.json`; errors name the file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            user_err!(
                "{}: cannot read the model config ({e}); a model directory needs a config.json",
                path.display()
            )
        })?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| user_err!("{}: not valid JSON ({e})", path.display()))?;
        Self::from_json(&value).map_err(|msg| user_err!("{}: {msg}", path.display()).into())
    }

    /// Validate a parsed `config.json`; the error is a message without the file name.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let hf: HfConfig = serde_json::from_value(value.clone())
            .map_err(|e| format!("not a Llama-family config ({e})"))?;
        let arch = arch_of(&hf)?;
        check_supported(&hf, arch)?;
        let num_kv_heads = hf.num_key_value_heads.unwrap_or(hf.num_attention_heads);
        let head_dim = match hf.head_dim {
            Some(d) => d,
            None if hf.num_attention_heads > 0 => hf.hidden_size / hf.num_attention_heads,
            None => 0,
        };
        let labels = hf.num_labels.or(hf.id2label.as_ref().map(|m| m.len()));
        let head = Head::of(hf.architectures.as_deref().unwrap_or(&[]), labels)?;
        let cfg = ModelConfig {
            head,
            arch,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: hf.rms_norm_eps.unwrap_or(DEFAULT_RMS_NORM_EPS),
            rope_theta: rope_theta_of(&hf),
            max_position_embeddings: hf.max_position_embeddings.unwrap_or(usize::MAX),
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(false),
            qkv_bias: arch == Arch::Qwen2 || hf.attention_bias.unwrap_or(false),
            o_bias: arch != Arch::Qwen2 && hf.attention_bias.unwrap_or(false),
            mlp_bias: arch == Arch::Llama && hf.mlp_bias.unwrap_or(false),
            bos_token_id: match hf.bos_token_id {
                Some(OneOrMany::One(id)) => Some(id),
                Some(OneOrMany::Many(ids)) => ids.first().copied(),
                None => None,
            },
            eos_token_ids: match hf.eos_token_id {
                Some(OneOrMany::One(id)) => vec![id],
                Some(OneOrMany::Many(ids)) => ids,
                None => vec![],
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check the shape invariants.
    pub fn validate(&self) -> Result<(), String> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if let Some((name, v)) = sizes.iter().find(|(_, v)| *v > MAX_SIZE) {
            return Err(format!(
                "{name} is {v}, beyond any model scir can hold (at most {MAX_SIZE})"
            ));
        }
        if self.num_layers > MAX_LAYERS {
            return Err(format!(
                "num_hidden_layers is {}, beyond any model scir can hold (at most {MAX_LAYERS})",
                self.num_layers
            ));
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!(
                "head_dim ({}) must be even for RoPE",
                self.head_dim
            ));
        }
        Ok(())
    }

    /// Number of query heads sharing one key/value head.
    pub fn kv_groups(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// A `config.json` transformers loads (f32 weights).
    pub fn to_hf_json(&self) -> Value {
        let mut v = json!({
            "architectures": [self.arch.class_name(self.head)],
            "model_type": self.arch.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": "float32",
        });
        let obj = v.as_object_mut().expect("a JSON object literal");
        if self.max_position_embeddings != usize::MAX {
            obj.insert(
                "max_position_embeddings".into(),
                json!(self.max_position_embeddings),
            );
        }
        if self.head == Head::Score {
            obj.insert("id2label".into(), json!({ "0": "LABEL_0" }));
            obj.insert("label2id".into(), json!({ "LABEL_0": 0 }));
        }
        match self.arch {
            Arch::Llama => {
                obj.insert("attention_bias".into(), json!(self.o_bias));
                obj.insert("mlp_bias".into(), json!(self.mlp_bias));
            }
            Arch::Mistral => {
                obj.insert("sliding_window".into(), Value::Null);
            }
            Arch::Qwen2 => {
                obj.insert("use_sliding_window".into(), json!(false));
            }
        }
        if let Some(bos) = self.bos_token_id {
            obj.insert("bos_token_id".into(), json!(bos));
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => {
                obj.insert("eos_token_id".into(), json!(one));
            }
            many => {
                obj.insert("eos_token_id".into(), json!(many));
            }
        }
        v
    }
}

fn arch_of(hf: &HfConfig) -> Result<Arch, String> {
    let model_type = hf.model_type.as_deref().unwrap_or("");
    if let Some(arch) = Arch::from_model_type(model_type) {
        return Ok(arch);
    }
    let archs = hf.architectures.as_deref().unwrap_or(&[]);
    Err(format!(
        "unknown architecture (model_type {model_type:?}, architectures {archs:?}); scir supports \
         model_type \"llama\", \"mistral\" and \"qwen2\""
    ))
}

fn check_supported(hf: &HfConfig, arch: Arch) -> Result<(), String> {
    if let Some(act) = hf.hidden_act.as_deref()
        && act != "silu"
    {
        return Err(format!(
            "hidden_act {act:?} is not supported; scir implements \"silu\" (SwiGLU)"
        ));
    }
    for (field, params) in [
        ("rope_scaling", &hf.rope_scaling),
        ("rope_parameters", &hf.rope_parameters),
    ] {
        let kind = params
            .as_ref()
            .and_then(|p| p.rope_type.clone().or(p.legacy_type.clone()));
        if let Some(kind) = kind
            && kind != "default"
        {
            return Err(format!(
                "{field} type {kind:?} is not supported; scir implements plain RoPE"
            ));
        }
    }
    let window_on = match arch {
        Arch::Mistral => hf.sliding_window.is_some(),
        Arch::Qwen2 => hf.use_sliding_window.unwrap_or(false),
        Arch::Llama => false,
    };
    if window_on {
        return Err(format!(
            "sliding_window = {:?} asks for sliding-window attention, which scir does not implement; \
             set it to null (Mistral) or use_sliding_window to false (Qwen2) if your sequences are \
             shorter than the window (then the result is the same)",
            hf.sliding_window
        ));
    }
    if let Some(other) = hf
        .layer_types
        .iter()
        .flatten()
        .find(|t| t.as_str() != "full_attention")
    {
        return Err(format!(
            "layer_types contains {other:?}; scir implements only \"full_attention\" layers"
        ));
    }
    if arch == Arch::Mistral && hf.mlp_bias.unwrap_or(false) {
        return Err("mlp_bias is not supported for Mistral".into());
    }
    Ok(())
}

fn rope_theta_of(hf: &HfConfig) -> f64 {
    hf.rope_theta
        .or_else(|| hf.rope_parameters.as_ref().and_then(|p| p.rope_theta))
        .unwrap_or(DEFAULT_ROPE_THETA)
}

/// Named sizes for models made from scratch. `vocab_size` comes from the tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// For tests and quick experiments: 2 layers, hidden 64 (~0.1 M parameters with a
    /// character vocabulary).
    Tiny,
    /// The built-in world's model (as the design's PyTorch prototype): 4 layers, hidden 128,
    /// 4 heads, SwiGLU 344 (~0.8 M parameters with a character vocabulary).
    World,
    /// About 30 M parameters with an 8k vocabulary (benchmarks).
    Small30M,
}

impl Preset {
    /// A Llama config of this size for a tokenizer with `vocab_size` tokens.
    pub fn config(self, vocab_size: usize, bos: Option<u32>, eos: Vec<u32>) -> ModelConfig {
        let (hidden, inter, layers, heads, kv) = match self {
            Preset::Tiny => (64, 172, 2, 4, 2),
            Preset::World => (128, 344, 4, 4, 4),
            Preset::Small30M => (512, 1536, 8, 8, 4),
        };
        ModelConfig {
            arch: Arch::Llama,
            vocab_size,
            hidden_size: hidden,
            intermediate_size: inter,
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: kv,
            head_dim: hidden / heads,
            rms_norm_eps: 1e-5,
            rope_theta: DEFAULT_ROPE_THETA,
            max_position_embeddings: 2048,
            tie_word_embeddings: true,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            bos_token_id: bos,
            eos_token_ids: eos,
            head: Head::Lm,
        }
    }
}
