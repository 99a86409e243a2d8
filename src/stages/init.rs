//! `init`: a tiny Llama made from scratch for the built-in world's character
//! tokenizer — `model@initial` of the default pipeline (the pre-SFT model and
//! the default IRM reference).
//!
//! No inputs, no tables; writes a checkpoint (Hugging Face layout). The sizes
//! start from the `tiny` preset and may be overridden; the weights depend only
//! on the params and the task's seed.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::engine::stage::{Stage, TaskContext};
use crate::model::{Model, Preset};
use crate::world::format::{BOS, EOS, PAD, UNK};

/// Params of `init` (every field defaulted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InitParams {
    /// Hidden size (divisible by `heads`; `hidden / heads` even).
    pub hidden: usize,
    /// SwiGLU inner size.
    pub intermediate: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
}

impl Default for InitParams {
    fn default() -> Self {
        InitParams {
            hidden: 64,
            intermediate: 172,
            layers: 2,
            heads: 4,
            kv_heads: 2,
        }
    }
}

/// The `init` stage.
pub struct Init;

impl Stage for Init {
    type Params = InitParams;
    /// Bump when the initial weights change for the same params.
    const VERSION: u32 = 1;
    const CHECKPOINT: bool = true;

    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let tokenizer = crate::world::tokenizer();
        let tok_config = json!({
            "bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK,
        });
        let vocab = tokenizer.get_vocab_size(true);
        let bos = tokenizer.token_to_id(BOS);
        let eos = tokenizer.token_to_id(EOS).into_iter().collect();
        let mut cfg = Preset::Tiny.config(vocab, bos, eos);
        cfg.hidden_size = p.hidden;
        cfg.intermediate_size = p.intermediate;
        cfg.num_layers = p.layers;
        cfg.num_heads = p.heads;
        cfg.num_kv_heads = p.kv_heads;
        cfg.head_dim = p.hidden / p.heads.max(1);
        let model = Model::from_config(
            cfg,
            tokenizer,
            tok_config,
            ctx.seed,
            &super::common::device(),
        )?;
        ctx.log(&format!("{} parameters", model.param_count()));
        model.save(&ctx.checkpoint_dir()?)
    }
}
