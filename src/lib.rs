//! scir: Self-Consistent Internal Rewards.
//!
//! A model writes responses, judges them with two of its own internal reward
//! models (the DPO implicit reward and itself as LLM-as-a-judge), keeps the
//! pairs where the two agree, and trains with DPO plus a loss that makes the
//! two agree more. Each iteration runs as a DAG of cached stages that exchange
//! Parquet tables and checkpoints on disk.
//!
//! Layout (one concept per module; the README's "How the code is laid out" draws the
//! dependency direction):
//!
//! ```text
//! cli/      the command line (clap); `main.rs` only calls `cli::main`
//! engine/   the pipeline engine: config, DAG, cache keys, stage contract, store, scheduler
//! stages/   one file per pipeline stage, their shared helpers in `stages::common`
//! tables/   one typed definition per table the stages exchange
//! table/    byte-deterministic Parquet writing and reading; typed tables (`table!`)
//! eval/     what the eval stages measure (held-out data only)
//! report/   `scir report`: the eval tables as text, JSON, report.md and charts
//! sql       `scir sql`: DataFusion over the public tables
//! export    model answers for external judges (MT-Bench, AlpacaEval)
//! loss/     DPO, the IRM/GRM preferences, consistency losses, selection rule
//! model/    the Llama-family decoder, checkpoints, text, generation, training
//! world/    the built-in synthetic world (its gold scorer is for eval only)
//! bench/    `scir model bench` and the scir side of bench/compare.sh
//! jsonl     JSON Lines input files; error, failpoint: shared by all
//! ```

pub mod bench;
pub mod cli;
pub mod engine;
pub mod error;
pub mod eval;
pub mod export;
pub mod failpoint;
pub mod jsonl;
pub mod loss;
pub mod model;
pub mod report;
pub mod sql;
pub mod stages;
pub mod table;
pub mod tables;
pub mod world;

pub use error::Error;
