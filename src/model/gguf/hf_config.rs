//! GGUF metadata (`llama.*` keys) → a Hugging Face `LlamaForCausalLM` `config.json` object.
//!
//! Read: `general.architecture` (must be `llama`; llama.cpp also writes Mistral-style models
//! so), `llama.{block_count, embedding_length, feed_forward_length, context_length,
//! attention.head_count, attention.head_count_kv, attention.key_length,
//! attention.layer_norm_rms_epsilon, rope.freq_base, rope.dimension_count, vocab_size}`, the
//! tokenizer's special ids, and the tensor list (tied output, attention biases). Rope
//! scaling, partial rotary and a separate value head size are rejected with a user error:
//! scir's decoder does not implement them. f32 metadata floats are widened exactly (what
//! transformers' loader writes).

use serde_json::{Map, Value, json};

use super::file::GgufFile;
use crate::user_err;

/// The only architecture imported (llama.cpp's name for the Llama family).
const ARCH: &str = "llama";
/// transformers' Llama defaults when the file names none.
const DEFAULT_ROPE_THETA: f64 = 10_000.0;
const DEFAULT_RMS_EPS: f64 = 1e-6;

fn key(name: &str) -> String {
    format!("{ARCH}.{name}")
}

/// The `config.json` object for `file`.
pub fn hf_config(file: &GgufFile) -> anyhow::Result<Value> {
    let arch = file.str("general.architecture")?;
    if arch != ARCH {
        return Err(user_err!(
            "{}: GGUF architecture {arch:?} is not supported; scir imports {ARCH:?} \
             (Llama-family) GGUF files",
            file.path().display()
        )
        .into());
    }
    reject_unsupported(file)?;
    let hidden = file.usize(&key("embedding_length"))?;
    let heads = file.usize(&key("attention.head_count"))?;
    let kv_heads = file
        .opt_u64(&key("attention.head_count_kv"))?
        .map_or(heads, |v| v as usize);
    let vocab = match file.opt_strs("tokenizer.ggml.tokens")? {
        Some(tokens) => tokens.len(),
        None => file.usize(&key("vocab_size"))?,
    };
    let names = file.tensor_names();
    let has_bias = |part: &str| names.iter().any(|n| n.ends_with(&format!("{part}.bias")));
    let mut cfg = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": file.usize(&key("feed_forward_length"))?,
        "num_hidden_layers": file.usize(&key("block_count"))?,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim(file, hidden, heads)?,
        "hidden_act": "silu",
        "rms_norm_eps": file.opt_f64(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(DEFAULT_RMS_EPS),
        "rope_theta": file.opt_f64(&key("rope.freq_base"))?.unwrap_or(DEFAULT_ROPE_THETA),
        "tie_word_embeddings": !file.has_tensor("output.weight"),
        "attention_bias": has_bias("attn_q") || has_bias("attn_output"),
        "mlp_bias": has_bias("ffn_up"),
        "torch_dtype": "float32",
    });
    insert_optional(file, cfg.as_object_mut().expect("an object literal"))?;
    Ok(cfg)
}

/// The head size (`attention.key_length`, else hidden / heads); rotary must cover it all.
fn head_dim(file: &GgufFile, hidden: usize, heads: usize) -> anyhow::Result<usize> {
    let head_dim = match file.opt_u64(&key("attention.key_length"))? {
        Some(d) => d as usize,
        None if heads > 0 => hidden / heads,
        None => 0,
    };
    if let Some(rot) = file.opt_u64(&key("rope.dimension_count"))?
        && rot as usize != head_dim
    {
        return Err(user_err!(
            "{}: {} is {rot} but the head size is {head_dim}; partial rotary embeddings are \
             not supported",
            file.path().display(),
            key("rope.dimension_count")
        )
        .into());
    }
    Ok(head_dim)
}

/// Context length and special token ids, when the file states them.
fn insert_optional(file: &GgufFile, obj: &mut Map<String, Value>) -> anyhow::Result<()> {
    if let Some(ctx) = file.opt_u64(&key("context_length"))? {
        obj.insert("max_position_embeddings".into(), json!(ctx));
    }
    for (hf, gguf) in [
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(id) = file.opt_u64(gguf)? {
            obj.insert(hf.into(), json!(id));
        }
    }
    Ok(())
}

/// Metadata that changes the maths in ways scir's decoder does not implement.
fn reject_unsupported(file: &GgufFile) -> anyhow::Result<()> {
    if let Some(kind) = file.opt_str(&key("rope.scaling.type"))?
        && kind != "none"
    {
        return Err(user_err!(
            "{}: rope scaling {kind:?} is not supported (scir's decoder has plain RoPE)",
            file.path().display()
        )
        .into());
    }
    if file.has_tensor("rope_freqs.weight") {
        return Err(user_err!(
            "{}: has rope_freqs.weight (Llama 3.1-style rope scaling), which scir does not support",
            file.path().display()
        )
        .into());
    }
    if let (Some(k), Some(v)) = (
        file.opt_u64(&key("attention.key_length"))?,
        file.opt_u64(&key("attention.value_length"))?,
    ) && k != v
    {
        return Err(user_err!(
            "{}: key head size {k} differs from value head size {v}; scir needs them equal",
            file.path().display()
        )
        .into());
    }
    if file.opt_u64(&key("expert_count"))?.unwrap_or(0) > 0 {
        return Err(user_err!(
            "{}: a mixture-of-experts model; scir imports dense Llama models only",
            file.path().display()
        )
        .into());
    }
    Ok(())
}
