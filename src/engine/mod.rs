//! The engine: a pipeline file becomes a plan, the plan a DAG of tasks, and each task runs
//! once per content key, committed atomically into the store. It knows stages only through
//! [`stage::DynStage`] (the registry is a parameter) and tables only as files with a schema.
//!
//! ```text
//! config   pipeline.yaml: strict parsing, validation into a runtime plan (per arm)
//! dag      stages × iterations × arms unrolled into tasks; identical tasks merged
//! cache    content-addressed task keys (BLAKE3 over canonical JSON); the design is there
//! stage    the contract every stage implements, and what a running task may touch
//! files    sorted listings, fsync, atomic JSON
//! store    the object store, atomic commit, the public view, verify, gc
//! layout   where everything lives under an artifacts directory
//! lock     kernel-released file locks
//! shard    sharded tasks: N shard tasks and a merge with the unsharded key
//! sched    the executor: hit, run or skip each task; run records
//! runlog   run records (`scir runs`, `scir_runs`/`scir_tasks` in SQL)
//! ```

pub mod cache;
pub mod config;
pub mod dag;
pub mod files;
pub mod layout;
pub mod lock;
pub mod runlog;
pub mod sched;
pub mod shard;
pub mod stage;
pub mod store;
