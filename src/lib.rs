//! scir: Self-Consistent Internal Rewards.
//!
//! A model writes responses, judges them with two of its own internal reward
//! models (the DPO implicit reward and itself as LLM-as-a-judge), keeps the
//! pairs where the two agree, and trains with DPO plus a loss that makes the
//! two agree more. Each iteration runs as a DAG of cached stages that exchange
//! Parquet tables and checkpoints on disk.
//!
//! Layout (one concept per module):
//!
//! ```text
//! cli/      the command line (clap); `main.rs` only calls `cli::main`
//! config    pipeline.yaml: strict parsing, validation into a runtime plan
//! dag       stages x iterations x arms unrolled into tasks
//! export    model answers for external judges (MT-Bench, AlpacaEval)
//! cache     content-addressed task keys (BLAKE3 over canonical JSON)
//! store     the object store, atomic commit, public view, verify, gc
//! lock      kernel-released file locks
//! runlog    run records
//! sched     the executor
//! stage     the contract every stage implements
//! table     byte-deterministic Parquet writing and reading; typed tables (`table!`)
//! tables/   one typed definition per table the stages exchange
//! sql       `scir sql`: DataFusion over the public tables
//! loss/     DPO, the IRM/GRM preferences, consistency losses, selection rule
//! model/    the Llama-family decoder, checkpoints, text, generation, training
//! report/   eval metrics, the eval tables, `scir report` (table, report.md, plots)
//! world/    the built-in synthetic world (its gold scorer is for eval only)
//! stages/   (top-level folder) one file per pipeline stage
//! ```

pub mod bench;
pub mod cli;
pub mod engine;
pub mod error;
pub mod eval;
pub mod export;
pub mod failpoint;
pub mod loss;
pub mod model;
pub mod report;
pub mod sql;
pub mod stages;
pub mod table;
pub mod tables;
pub mod world;

pub use error::Error;
