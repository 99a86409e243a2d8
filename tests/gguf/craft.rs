//! Crafting GGUF files from scir models: llama.cpp's tensor names and Q/K row permutation
//! (written out independently of the importer), the committed fixture tokenizer as GGUF
//! tokenizer metadata, any tensor type per tensor.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value as G};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use scir::model::config::ModelConfig;
use scir::model::{Model, Weights};
use serde_json::{Value, json};

pub fn fixture_tokenizer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

pub const CHAT_TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// A small random Llama model over the fixture tokenizer (vocabulary 320).
pub fn tiny_llama(tied: bool, seed: u64) -> Model {
    let cfg = ModelConfig::from_json(&json!({
        "model_type": "llama", "vocab_size": 320, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1.52587890625e-5, "rope_theta": 50000.0, "tie_word_embeddings": tied,
        "max_position_embeddings": 512, "bos_token_id": 1, "eos_token_id": 2,
    }))
    .unwrap();
    let dir = fixture_tokenizer_dir();
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let tc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap())
            .unwrap();
    Model::from_config(cfg, tok, tc, seed, &Device::Cpu).unwrap()
}

/// llama.cpp's GGUF name of an HF tensor name.
pub fn gguf_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, part) = rest.split_once('.').unwrap();
    let part = part
        .replace("input_layernorm", "attn_norm")
        .replace("post_attention_layernorm", "ffn_norm")
        .replace("self_attn.q_proj", "attn_q")
        .replace("self_attn.k_proj", "attn_k")
        .replace("self_attn.v_proj", "attn_v")
        .replace("self_attn.o_proj", "attn_output")
        .replace("mlp.gate_proj", "ffn_gate")
        .replace("mlp.up_proj", "ffn_up")
        .replace("mlp.down_proj", "ffn_down");
    format!("blk.{layer}.{part}")
}

/// `convert_hf_to_gguf.py`'s `LlamaModel.permute`: `w.reshape(h, 2, d/2, …).swapaxes(1, 2)`.
pub fn llama_cpp_permute(t: &Tensor, heads: usize) -> Tensor {
    let dims = t.dims().to_vec();
    let mut split = vec![heads, 2, dims[0] / heads / 2];
    split.extend(&dims[1..]);
    t.reshape(split)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape(dims)
        .unwrap()
}

/// The fixture tokenizer as GGUF metadata (`gpt2` model, `gpt-2` pre-tokenizer, BOS added).
pub fn tokenizer_metadata() -> Vec<(String, G)> {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_tokenizer_dir().join("tokenizer.json")).unwrap(),
    )
    .unwrap();
    let vocab = v["model"]["vocab"].as_object().unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    let special: Vec<u64> = v["added_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    let types = (0..tokens.len())
        .map(|i| G::I32(if special.contains(&(i as u64)) { 3 } else { 1 }))
        .collect();
    let merges = v["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            G::String(format!(
                "{} {}",
                m[0].as_str().unwrap(),
                m[1].as_str().unwrap()
            ))
        })
        .collect();
    let s = |x: &str| G::String(x.into());
    vec![
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.pre".into(), s("gpt-2")),
        (
            "tokenizer.ggml.tokens".into(),
            G::Array(tokens.into_iter().map(G::String).collect()),
        ),
        ("tokenizer.ggml.token_type".into(), G::Array(types)),
        ("tokenizer.ggml.merges".into(), G::Array(merges)),
        ("tokenizer.ggml.bos_token_id".into(), G::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), G::U32(2)),
        ("tokenizer.ggml.padding_token_id".into(), G::U32(0)),
        ("tokenizer.ggml.add_bos_token".into(), G::Bool(true)),
        ("tokenizer.chat_template".into(), s(CHAT_TEMPLATE)),
    ]
}

/// The `llama.*` metadata of `m`.
pub fn model_metadata(m: &Model) -> Vec<(String, G)> {
    let c = m.config();
    let u = |x: usize| G::U32(x as u32);
    vec![
        ("general.architecture".into(), G::String("llama".into())),
        ("llama.block_count".into(), u(c.num_layers)),
        ("llama.context_length".into(), u(c.max_position_embeddings)),
        ("llama.embedding_length".into(), u(c.hidden_size)),
        ("llama.feed_forward_length".into(), u(c.intermediate_size)),
        ("llama.attention.head_count".into(), u(c.num_heads)),
        ("llama.attention.head_count_kv".into(), u(c.num_kv_heads)),
        ("llama.rope.freq_base".into(), G::F32(c.rope_theta as f32)),
        ("llama.rope.dimension_count".into(), u(c.head_dim)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            G::F32(c.rms_norm_eps as f32),
        ),
        ("llama.vocab_size".into(), u(c.vocab_size)),
    ]
}

/// Every tensor of `m` under its GGUF name, Q/K permuted, stored as `dtype(hf_name)`.
pub fn gguf_tensors(m: &Model, dtype: impl Fn(&str) -> GgmlDType) -> Vec<(String, QTensor)> {
    let c = m.config();
    m.tensors()
        .iter()
        .map(|(name, t)| {
            let t = if name.contains("q_proj") {
                llama_cpp_permute(t, c.num_heads)
            } else if name.contains("k_proj") {
                llama_cpp_permute(t, c.num_kv_heads)
            } else {
                t.clone()
            };
            (gguf_name(name), QTensor::quantize(&t, dtype(name)).unwrap())
        })
        .collect()
}

/// Write a GGUF file from metadata and tensors.
pub fn write_gguf(path: &Path, meta: &[(String, G)], tensors: &[(String, QTensor)]) {
    let mut f = std::fs::File::create(path).unwrap();
    let meta: Vec<(&str, &G)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &meta, &tensors).unwrap();
}

/// A complete crafted GGUF of `m` (all tensors `dtype`), with `edit` applied to the metadata.
pub fn craft(path: &Path, m: &Model, dtype: GgmlDType, edit: impl FnOnce(&mut Vec<(String, G)>)) {
    let mut meta = model_metadata(m);
    meta.extend(tokenizer_metadata());
    edit(&mut meta);
    write_gguf(path, &meta, &gguf_tensors(m, |_| dtype));
}

/// Set metadata `key` to `v` (replacing it if present).
pub fn set(meta: &mut Vec<(String, G)>, key: &str, v: G) {
    meta.retain(|(k, _)| k != key);
    meta.push((key.into(), v));
}

/// Load an imported directory.
pub fn load(dir: &Path) -> Model {
    Model::load(dir, Weights::Frozen, &Device::Cpu).unwrap()
}

/// The message of a `scir::Error::User` somewhere in the chain (panics otherwise).
pub fn user_msg(e: anyhow::Error) -> String {
    e.chain()
        .find_map(|x| match x.downcast_ref::<scir::error::Error>() {
            Some(scir::error::Error::User(m)) => Some(m.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("not a user error: {e:#}"))
}
