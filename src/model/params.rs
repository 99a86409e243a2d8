//! The decoder's parameter layout: every tensor name (Hugging Face naming) and shape a
//! [`ModelConfig`] implies, and the deterministic from-scratch initialiser.
//!
//! Names mirror checkpoints: `model.embed_tokens.weight`, `model.layers.{i}.self_attn.q_proj.weight`
//! (`(num_heads·head_dim, hidden)`), `…k_proj/v_proj` (`(num_kv_heads·head_dim, hidden)`),
//! `…o_proj` (`(hidden, num_heads·head_dim)`), `…mlp.gate_proj/up_proj` (`(inter, hidden)`),
//! `…mlp.down_proj` (`(hidden, inter)`), `…input_layernorm/post_attention_layernorm.weight`
//! (`(hidden,)`), `model.norm.weight`, and `lm_head.weight` (`(vocab, hidden)`) unless tied,
//! or for a reward model (`Head::Score`) `score.weight` (`(1, hidden)`) instead.
//!
//! Initialisation (as transformers: normal(0, 0.02) matrices, ones norms, zero biases) draws
//! from a ChaCha stream seeded by `(seed, tensor name)`, so each tensor's values depend only
//! on the seed and its name, not on the order tensors are made in.

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use rand_distr::{Distribution, Normal};

use super::config::{Head, ModelConfig};

/// Standard deviation of initial matrices (transformers' `initializer_range`).
pub const INIT_STD: f32 = 0.02;

/// How a parameter starts when made from scratch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitKind {
    Normal,
    Ones,
    Zeros,
}

/// One parameter tensor of the decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: InitKind,
}

impl ParamSpec {
    fn new(name: String, shape: &[usize], init: InitKind) -> Self {
        ParamSpec {
            name,
            shape: shape.to_vec(),
            init,
        }
    }

    /// Number of scalars.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

fn linear(out: &mut Vec<ParamSpec>, name: &str, o: usize, i: usize, bias: bool) {
    out.push(ParamSpec::new(
        format!("{name}.weight"),
        &[o, i],
        InitKind::Normal,
    ));
    if bias {
        out.push(ParamSpec::new(
            format!("{name}.bias"),
            &[o],
            InitKind::Zeros,
        ));
    }
}

/// Every parameter of a model with this config, in checkpoint order.
pub fn param_specs(cfg: &ModelConfig) -> Vec<ParamSpec> {
    let h = cfg.hidden_size;
    let embed = ParamSpec::new(
        "model.embed_tokens.weight".into(),
        &[cfg.vocab_size, h],
        InitKind::Normal,
    );
    let mut out = vec![embed];
    for i in 0..cfg.num_layers {
        layer_specs(cfg, i, &mut out);
    }
    out.push(ParamSpec::new(
        "model.norm.weight".into(),
        &[h],
        InitKind::Ones,
    ));
    match cfg.head {
        Head::Lm if !cfg.tie_word_embeddings => {
            linear(&mut out, "lm_head", cfg.vocab_size, h, false);
        }
        Head::Lm => {}
        Head::Score => linear(&mut out, "score", 1, h, false),
    }
    out
}

/// The parameters of block `i`.
fn layer_specs(cfg: &ModelConfig, i: usize, out: &mut Vec<ParamSpec>) {
    let (h, d, inter) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
    let (q_out, kv_out) = (cfg.num_heads * d, cfg.num_kv_heads * d);
    let p = format!("model.layers.{i}");
    let norm = |n: &str| ParamSpec::new(format!("{p}.{n}.weight"), &[h], InitKind::Ones);
    out.push(norm("input_layernorm"));
    let attn = format!("{p}.self_attn");
    linear(out, &format!("{attn}.q_proj"), q_out, h, cfg.qkv_bias);
    linear(out, &format!("{attn}.k_proj"), kv_out, h, cfg.qkv_bias);
    linear(out, &format!("{attn}.v_proj"), kv_out, h, cfg.qkv_bias);
    linear(out, &format!("{attn}.o_proj"), h, q_out, cfg.o_bias);
    out.push(norm("post_attention_layernorm"));
    let mlp = format!("{p}.mlp");
    linear(out, &format!("{mlp}.gate_proj"), inter, h, cfg.mlp_bias);
    linear(out, &format!("{mlp}.up_proj"), inter, h, cfg.mlp_bias);
    linear(out, &format!("{mlp}.down_proj"), h, inter, cfg.mlp_bias);
}

/// Total number of scalars (tied embeddings counted once).
pub fn param_count(cfg: &ModelConfig) -> usize {
    param_specs(cfg).iter().map(ParamSpec::numel).sum()
}

/// The initial value of one parameter: depends only on `seed` and the spec.
pub fn init_tensor(spec: &ParamSpec, seed: u64, dev: &Device) -> candle_core::Result<Tensor> {
    match spec.init {
        InitKind::Ones => Tensor::ones(spec.shape.as_slice(), candle_core::DType::F32, dev),
        InitKind::Zeros => Tensor::zeros(spec.shape.as_slice(), candle_core::DType::F32, dev),
        InitKind::Normal => {
            let mut key = [0u8; 32];
            let mut hasher = blake3::Hasher::new();
            hasher.update(&seed.to_le_bytes());
            hasher.update(spec.name.as_bytes());
            key.copy_from_slice(hasher.finalize().as_bytes());
            let mut rng = ChaCha8Rng::from_seed(key);
            let normal = Normal::new(0.0f32, INIT_STD).expect("a positive standard deviation");
            let data: Vec<f32> = (0..spec.numel()).map(|_| normal.sample(&mut rng)).collect();
            Tensor::from_vec(data, spec.shape.as_slice(), dev)
        }
    }
}
