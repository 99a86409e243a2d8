//! The Llama-family decoder, checkpoints, text, generation, scoring and training.
//!
//! ```text
//! config      config.json → validated ModelConfig; presets for models made from scratch
//! params      parameter names/shapes per config; deterministic initialiser
//! linear      Linear with an optional LoRA hook (Adapters::On/Off)
//! rms_norm    RMSNorm (differentiable)
//! rope        rotary embeddings (differentiable, per-row positions)
//! attention   grouped-query attention
//! mlp         SwiGLU
//! decoder     the decoder: Batch → logits (b, t, vocab)
//! batch       padded batches (left for generation, right for scoring)
//! kv_cache    the explicit KV cache for generation
//! checkpoint  Hugging Face directories ↔ Model (load f32/f16/bf16, save f32)
//! threads     candle's CPU thread settings for the process
//! tokenizer   tokenizer + special tokens + the TRL prompt/response seam
//! chat        chat templates (minijinja)
//! generate    batched sampling with per-row seeds
//! gguf        GGUF (llama.cpp) files → HF directories (`scir model import`)
//! score       response log-probs and judge verdict probabilities
//! reward      a reward model's scores (the score head at the last token)
//! lora        LoRA adapters (training)
//! fused_adamw one-pass in-place AdamW for f32 parameters (bit-identical)
//! optim       AdamW with saveable state, grad accumulation, clipping
//! schedule    learning-rate schedules (transformers' formulas)
//! train_state checkpoints that resume bit-identically
//! trainer     Stepper (accumulate → clip → schedule → AdamW), verdict logit gaps
//! ```
//!
//! Typical use (all CPU, f32):
//!
//! ```text
//! let m = Model::load(dir, Weights::Trainable, &Device::Cpu)?;       // or Weights::Frozen
//! let prompt = m.text.encode_chat_prompt(&[Message::user(q)])?;      // or encode_prompt(raw)
//! let resp = m.text.encode_response(answer, /*eos*/ true)?;
//! let lp = score::response_logprobs(&m.decoder, &[Pair { prompt, response: resp }],
//!                                   m.text.pad_id(), Adapters::On)?;  // (b,) differentiable
//! let out = generate::generate(&m.decoder, &prompts, &seeds, &params, Adapters::On)?;
//! let reference = m.frozen_copy()?;                                  // DPO reference (full FT)
//! m.save(out_dir)?;                                                  // HF layout, f32
//! ```
//!
//! Under LoRA, attach adapters with `m.decoder.linears_mut()` (module names as in the
//! checkpoint) and score the reference with `Adapters::Off`.
//!
//! Checks outside the tests: `scir model bench` (generation tokens/s and forward+backward
//! step time for the tiny and ~30 M presets; `RAYON_NUM_THREADS` sets the threads), and
//! `scripts/make_fixtures.py --check-scir-checkpoint DIR --prompt P --response R --eos`
//! (transformers loads a directory scir saved; compare with `scir model logprobs`).

pub mod attention;
pub mod batch;
pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod decoder;
pub mod fast;
pub mod frozen_matmul;
mod fused_adamw;
pub mod generate;
pub mod gguf;
pub mod kv_cache;
pub mod linear;
pub mod lora;
pub mod mlp;
pub mod optim;
pub mod params;
pub mod reward;
pub mod rms_norm;
pub mod rope;
pub mod sampling;
pub mod schedule;
pub mod score;
pub mod simd;
pub mod threads;
pub mod tokenizer;
pub mod train_state;
pub mod trainer;

pub use batch::{Batch, Padding};
pub use chat::Message;
pub use checkpoint::{Model, Weights};
pub use config::{Arch, ModelConfig, Preset};
pub use decoder::Decoder;
pub use kv_cache::KvCache;
pub use linear::{Adapters, Linear};
pub use tokenizer::Text;
