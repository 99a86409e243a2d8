//! One file per pipeline stage; this module is the registry.
//!
//! A stage implements [`crate::stage::Stage`]; [`registry`] maps each kind
//! name (as written in `pipeline.yaml`) to its implementation. The engine
//! takes the registry as a parameter, so tests add their own stages.
//!
//! ```text
//! world               the built-in world's tables
//! init                a tiny model from scratch (model@initial of the world)
//! sft                 IFT + EFT fine-tuning → M0
//! checkpoint          a user's Hugging Face directory as a model
//! prompts             a user's prompt file (JSONL, Parquet, CSV) as a prompts table
//! generate            Mt samples responses and forms pairs
//! score-irm           implicit reward (log-probs under Mt and the IRM reference)
//! score-grm           generative reward (Mt as a judge)
//! consistency-filter  IRM/GRM agreement and the training set
//! train               Mt → Mt+1 (SCIR or SRLM)
//! ```

use crate::stage::{Registry, Stage};

pub mod checkpoint;
pub mod common;
pub mod consistency_filter;
pub mod generate;
pub mod init;
pub mod judge;
pub mod prompts;
pub mod score_grm;
pub mod score_irm;
pub mod sft;
pub mod train;
pub mod train_data;
pub mod world;

static WORLD: world::World = world::World;
static INIT: init::Init = init::Init;
static SFT: sft::Sft = sft::Sft;
static GENERATE: generate::Generate = generate::Generate;
static SCORE_IRM: score_irm::ScoreIrm = score_irm::ScoreIrm;
static SCORE_GRM: score_grm::ScoreGrm = score_grm::ScoreGrm;
static FILTER: consistency_filter::ConsistencyFilter = consistency_filter::ConsistencyFilter;
static TRAIN: train::Train = train::Train;
static CHECKPOINT: checkpoint::Checkpoint = checkpoint::Checkpoint;
static PROMPTS: prompts::Prompts = prompts::Prompts;

/// Every built-in stage kind.
pub fn registry() -> Registry {
    let stages: [&'static dyn Stage; 10] = [
        &WORLD,
        &INIT,
        &SFT,
        &GENERATE,
        &SCORE_IRM,
        &SCORE_GRM,
        &FILTER,
        &TRAIN,
        &CHECKPOINT,
        &PROMPTS,
    ];
    stages.into_iter().map(|s| (s.kind(), s)).collect()
}
