//! scir's parser modules, compiled on their own for fuzzing (see Cargo.toml).
//! The files are scir's own (`#[path]`), so the fuzzers test the shipped code.

#[path = "../../src/error.rs"]
pub mod error;
#[path = "../../src/failpoint.rs"]
pub mod failpoint;
#[path = "../../src/stages/common/judge.rs"]
pub mod judge;
#[path = "../../src/model/mod.rs"]
pub mod model;
#[path = "../../src/table/mod.rs"]
pub mod table;

pub mod scratch;

pub mod engine;
pub mod stages;
