//! One file per pipeline stage; this module is the registry.
//!
//! A stage implements the typed [`crate::engine::stage::Stage`]; [`registry`] maps each kind
//! name (as written in `pipeline.yaml`) to its implementation. The engine
//! takes the registry as a parameter, so tests add their own stages.
//!
//! [`KINDS`] lists every kind with one line about it (what `scir dag` shows).
//!
//! Adding a stage `foo` (see `score_irm.rs` for a complete one):
//!
//! ```text
//! 0. src/tables/foo.rs: table! { pub struct FooRow in "foo" { … } }   // if it writes a table
//! 1. src/stages/foo.rs: #[derive(Serialize, Deserialize)] #[serde(deny_unknown_fields, default)]
//!                    pub struct FooParams { … }       // + Default
//!                    pub struct Foo;  impl Stage for Foo {
//!                      type Params = FooParams;
//!                      const VERSION = 1;   // bump when outputs change
//!                      const INPUTS = &[common::slots::MT,         // model@k-1
//!                                       Slot::tables("data").by_default("world")];
//!                      const TABLES = &[FooRow::declared];  const CHECKPOINT = false;
//!                      validate(&FooParams) -> Result<(), ParamError>   // ranges (optional)
//!                      run(&FooParams, ctx) { let prompts: Vec<PromptRow> = ctx.input("data")?.rows()?;
//!                                 ctx.write_rows(rows)?;   // or ctx.checkpoint_dir()
//!                      } }
//! 2. here:           pub mod foo;  add StageKind::new("foo", &foo::Foo, "one line") to `KINDS`.
//!    (A stage reads another stage's settings through `InputArtifact::params_as`, and never
//!    imports another stage's module: what stages share lives in `common`.)
//! 3. pipeline.yaml:  stages: { foo: { each_iteration: true, inputs: { data: world }, params: {…} } }
//! ```
//!
//! Every table carries an Int32 `iteration` column (first), contains no `arm`
//! column (the public view adds it), and is built in a deterministic row
//! order; sampling uses `ctx.seed` (derived per task, part of the key) with
//! per-row seeds, so results do not depend on thread count.

use crate::engine::stage::{Registry, StageKind, registry_of};

pub mod answers;
pub mod checkpoint;
pub mod common;
pub mod consistency_filter;
pub mod demo_pairs;
pub mod eval;
pub mod generate;
pub mod grm_winrate;
pub mod init;
pub mod instructions;
pub mod judge_data;
pub mod preference_data;
pub mod prompts;
pub mod score_grm;
pub mod score_irm;
pub mod sft;
pub mod sft_data;
pub mod train;
pub mod train_rm;
pub mod world;

/// Every built-in stage kind: its name in `pipeline.yaml`, its implementation, and one line
/// about it (shown by `scir dag`).
#[rustfmt::skip]
pub static KINDS: [StageKind; 21] = [
    StageKind::new("world", &world::World,
        "the built-in synthetic world's prompt pool and IFT/EFT seed data"),
    StageKind::new("heldout", &world::Heldout,
        "the built-in world's held-out prompts and gold-labelled pairs (eval only)"),
    StageKind::new("init", &init::Init,
        "a tiny model from scratch with the built-in world's tokenizer"),
    StageKind::new("sft", &sft::Sft,
        "supervised fine-tuning on the world's IFT + EFT data, or a user's SFT data (M0)"),
    StageKind::new("sft-data", &sft_data::SftData,
        "a user's SFT file in TRL's formats (messages, prompt/completion) or Self-Instruct's"),
    StageKind::new("preference-data", &preference_data::PreferenceData,
        "a user's TRL preference file (prompt, chosen, rejected): judge seed data, RM pairs"),
    StageKind::new("judge-data", &judge_data::JudgeData,
        "judge examples from a model's own samples on the world's judge pool, gold-labelled"),
    StageKind::new("checkpoint", &checkpoint::Checkpoint,
        "a Hugging Face model directory as a pipeline model"),
    StageKind::new("prompts", &prompts::Prompts,
        "a prompt file (JSONL, Parquet or CSV) split into per-iteration slices"),
    StageKind::new("instructions", &instructions::Instructions,
        "a Self-Instruct-style JSONL file (instruction + input) split into per-iteration slices"),
    StageKind::new("generate", &generate::Generate,
        "Mt samples n responses per prompt and forms unlabeled pairs"),
    StageKind::new("score-irm", &score_irm::ScoreIrm,
        "implicit reward: response log-probs under Mt and the IRM reference, p_irm per pair"),
    StageKind::new("score-grm", &score_grm::ScoreGrm,
        "generative reward: the judge (Mt, or M0 if frozen) rates each pair, pairwise or pointwise"),
    StageKind::new("consistency-filter", &consistency_filter::ConsistencyFilter,
        "IRM/GRM agreement per pair and the training set (dynamic, static, grm_only, cream)"),
    StageKind::new("train", &train::Train,
        "Mt → Mt+1: SCIR (dynamic selection + consistency loss), SRLM (DPO) or CREAM"),
    StageKind::new("demo-pairs", &demo_pairs::DemoPairs,
        "preference pairs: a Self-Instruct task's demonstration over a model's own answer"),
    StageKind::new("train-rm", &train_rm::TrainRm,
        "an external Bradley–Terry reward model on the judge seed data (M0 + a score head)"),
    StageKind::new("eval", &eval::Eval,
        "gold score, win rate vs M0, IRM/GRM accuracy and agreement on held-out data"),
    StageKind::new("eval-labels", &eval::EvalLabels,
        "gold accuracy of the IRM/GRM preferences and training labels on the iteration's own pairs"),
    StageKind::new("answers", &answers::Answers,
        "one answer per prompt (greedy by default) from a model, for held-out evaluation"),
    StageKind::new("grm-winrate", &grm_winrate::GrmWinrate,
        "win rate of Mt's answers over M0's on held-out prompts, judged by M0's own GRM"),
];

/// Every built-in stage kind, by name.
pub fn registry() -> Registry {
    registry_of(KINDS)
}
