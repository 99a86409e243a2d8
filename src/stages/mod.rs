//! One file per pipeline stage; this module is the registry.
//!
//! A stage implements the typed [`crate::engine::stage::Stage`]; [`registry`] maps each kind
//! name (as written in `pipeline.yaml`) to its implementation. The engine
//! takes the registry as a parameter, so tests add their own stages.
//!
//! ```text
//! world               the built-in world's prompt pool and seed data
//! heldout             the built-in world's held-out sets (eval only)
//! init                a tiny model from scratch (model@initial of the world)
//! sft                 IFT + EFT fine-tuning → M0
//! judge-data          judge examples from a model's own samples, gold-labelled (world only)
//! checkpoint          a user's Hugging Face directory as a model
//! prompts             a user's prompt file (JSONL, Parquet, CSV) as a prompts table
//! generate            Mt samples responses and forms pairs
//! score-irm           implicit reward (log-probs under Mt and the IRM reference)
//! score-grm           generative reward (Mt as a judge)
//! consistency-filter  IRM/GRM agreement and the training set
//! train               Mt → Mt+1 (SCIR, SRLM or CREAM)
//! train-rm            an external Bradley–Terry reward model on the judge seed data
//! eval                gold metrics of a model on held-out prompts and pairs (eval only)
//! eval-labels         an arm's own pairs gold-labelled: label and reward accuracy
//! instructions        a Self-Instruct-style JSONL file (instruction + input) as prompts
//! answers             one answer per prompt (greedy by default), for held-out evaluation
//! grm-winrate         Mt's answers vs M0's on held-out prompts, judged by M0's own GRM
//! ```
//!
//! Adding a stage `foo` (see `score_irm.rs` for a complete one):
//!
//! ```text
//! 0. src/tables/foo.rs: table! { pub struct FooRow in "foo" { … } }   // if it writes a table
//! 1. src/stages/foo.rs: #[derive(Serialize, Deserialize)] #[serde(deny_unknown_fields, default)]
//!                    pub struct FooParams { … }       // + Default
//!                    pub struct Foo;  impl Stage for Foo {
//!                      type Params = FooParams;
//!                      const KIND = "foo"; const VERSION = 1;   // bump when outputs change
//!                      const ABOUT = "one line";
//!                      const INPUTS = &[common::slots::MT,         // model@k-1
//!                                       Slot::tables("data").by_default("world")];
//!                      const TABLES = &[FooRow::declared];  const CHECKPOINT = false;
//!                      validate(&FooParams) -> Result<(), ParamError>   // ranges (optional)
//!                      run(&FooParams, ctx) { let prompts: Vec<PromptRow> = ctx.input("data")?.rows()?;
//!                                 ctx.write_rows(rows)?;   // or ctx.checkpoint_dir()
//!                      } }
//! 2. here:           pub mod foo;  static FOO: foo::Foo = foo::Foo;  add &FOO to `registry`.
//!    (A stage reads another stage's settings through `InputArtifact::params_as`, and never
//!    imports another stage's module: what stages share lives in `common`.)
//! 3. pipeline.yaml:  stages: { foo: { each_iteration: true, inputs: { data: world }, params: {…} } }
//! ```
//!
//! Every table carries an Int32 `iteration` column (first), contains no `arm`
//! column (the public view adds it), and is built in a deterministic row
//! order; sampling uses `ctx.seed` (derived per task, part of the key) with
//! per-row seeds, so results do not depend on thread count.

use crate::engine::stage::{DynStage, Registry};

pub mod answers;
pub mod checkpoint;
pub mod common;
pub mod consistency_filter;
pub mod eval;
pub mod generate;
pub mod grm_winrate;
pub mod init;
pub mod instructions;
pub mod judge_data;
pub mod prompts;
pub mod score_grm;
pub mod score_irm;
pub mod sft;
pub mod train;
pub mod train_rm;
pub mod world;

static EVAL: eval::Eval = eval::Eval;
static EVAL_LABELS: eval::EvalLabels = eval::EvalLabels;
static WORLD: world::World = world::World;
static HELDOUT: world::Heldout = world::Heldout;
static INIT: init::Init = init::Init;
static SFT: sft::Sft = sft::Sft;
static JUDGE_DATA: judge_data::JudgeData = judge_data::JudgeData;
static GENERATE: generate::Generate = generate::Generate;
static SCORE_IRM: score_irm::ScoreIrm = score_irm::ScoreIrm;
static SCORE_GRM: score_grm::ScoreGrm = score_grm::ScoreGrm;
static FILTER: consistency_filter::ConsistencyFilter = consistency_filter::ConsistencyFilter;
static TRAIN: train::Train = train::Train;
static TRAIN_RM: train_rm::TrainRm = train_rm::TrainRm;
static CHECKPOINT: checkpoint::Checkpoint = checkpoint::Checkpoint;
static PROMPTS: prompts::Prompts = prompts::Prompts;
static INSTRUCTIONS: instructions::Instructions = instructions::Instructions;
static ANSWERS: answers::Answers = answers::Answers;
static GRM_WINRATE: grm_winrate::GrmWinrate = grm_winrate::GrmWinrate;

/// Every built-in stage kind.
pub fn registry() -> Registry {
    let stages: [&'static dyn DynStage; 18] = [
        &WORLD,
        &HELDOUT,
        &INIT,
        &SFT,
        &JUDGE_DATA,
        &GENERATE,
        &SCORE_IRM,
        &SCORE_GRM,
        &FILTER,
        &TRAIN,
        &TRAIN_RM,
        &CHECKPOINT,
        &PROMPTS,
        &EVAL,
        &EVAL_LABELS,
        &INSTRUCTIONS,
        &ANSWERS,
        &GRM_WINRATE,
    ];
    stages.into_iter().map(|s| (s.kind(), s)).collect()
}
