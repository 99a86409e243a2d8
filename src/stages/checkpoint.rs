//! `checkpoint`: a user's Hugging Face model directory as a model of the
//! pipeline (e.g. `models.initial` and `models.start` for a real model).
//!
//! `path` (relative to the pipeline file) holds `config.json`,
//! `tokenizer.json`, the weights (`weights`, default `model.safetensors`; list
//! every shard of a sharded checkpoint) and `extra` files (default
//! `tokenizer_config.json`, which carries the chat template). All of them are
//! external inputs: their content digests enter the key. The model is loaded
//! (validating config, weights and tokenizer together) and written in scir's
//! layout (f32).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::common;
use crate::engine::stage::{Stage, TaskContext};
use crate::model::{Model, Weights};

/// Params of `checkpoint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointParams {
    /// The model directory.
    pub path: PathBuf,
    /// Weight files inside it.
    #[serde(default = "default_weights")]
    pub weights: Vec<String>,
    /// Other files inside it that the model reads.
    #[serde(default = "default_extra")]
    pub extra: Vec<String>,
}

fn default_weights() -> Vec<String> {
    vec!["model.safetensors".into()]
}
fn default_extra() -> Vec<String> {
    vec!["tokenizer_config.json".into()]
}

/// The `checkpoint` stage.
pub struct Checkpoint;

impl Stage for Checkpoint {
    type Params = CheckpointParams;
    /// Bump when the output changes for the same files and params.
    const VERSION: u32 = 1;
    const CHECKPOINT: bool = true;

    fn external_files(&self, p: &CheckpointParams) -> Vec<PathBuf> {
        ["config.json", "tokenizer.json"]
            .iter()
            .map(|s| s.to_string())
            .chain(p.weights.iter().cloned())
            .chain(p.extra.iter().cloned())
            .map(|f| p.path.join(f))
            .collect()
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let dir = ctx.pipeline_dir.join(&p.path);
        let model = Model::load(&dir, Weights::Frozen, &common::device())?;
        ctx.log(&format!(
            "{}: {} parameters, chat template: {}",
            dir.display(),
            model.param_count(),
            model.text.chat_template().is_some()
        ));
        model.save(&ctx.checkpoint_dir()?)
    }
}
