//! Reliability, proven with the real `scir` binary on a toy pipeline: kill
//! anywhere and rerun, resumable training, concurrent runs with queries,
//! results independent of the thread count, and bad input that changes
//! nothing on disk, and the same through Slurm. README § Reliability summarises what this
//! guarantees.

mod bad_input;
mod concurrency;
mod determinism;
mod fuzz_regressions;
mod harness;
mod kill;
mod resume;
mod slurm;
