//! GGUF (llama.cpp) model files → Hugging Face model directories (`scir model import`).
//!
//! ```text
//! file       open + parse the header (candle's gguf_file), typed metadata, dequantise
//! hf_config  llama.* metadata → config.json (LlamaForCausalLM)
//! weights    llama.cpp names → HF names, f32, Q/K rotary row permutation undone
//! vocab      tokenizer.ggml.* → tokenizer.json (byte-level BPE) + tokenizer_config.json
//! import     staging directory → checks → rename into place
//! ```
//!
//! Output (`--out DIR`): `config.json`, `model.safetensors` (f32, HF names, sorted),
//! `tokenizer.json`, `tokenizer_config.json` (special tokens, chat template) — the layout
//! [`crate::model::Model::load`] reads. Every quantised type candle reads is dequantised
//! (F32, F16, BF16, Q4_0/1, Q5_0/1, Q8_0, K-quants); the result equals what transformers'
//! `from_pretrained(dir, gguf_file=...)` builds (checked by `tests/gguf` against
//! `scripts/make_gguf_fixtures.py`'s reference numbers). Bad files (not GGUF, truncated,
//! unsupported tensor type, architecture or tokenizer kind) are user errors naming the file
//! and what is supported, and leave `--out` untouched.

pub mod file;
pub mod hf_config;
pub mod import;
pub mod vocab;
pub mod weights;

pub use import::{ImportReport, import};
