//! scir's parser modules, compiled on their own for fuzzing (see Cargo.toml).
//! The files are scir's own (`#[path]`), so the fuzzers test the shipped code.

#[path = "../../src/error.rs"]
pub mod error;
#[path = "../../src/failpoint.rs"]
pub mod failpoint;
#[path = "../../src/table.rs"]
pub mod table;
#[path = "../../src/stage.rs"]
pub mod stage;
// config.rs declares `mod refs; mod resolve;`, which a `#[path]` module looks
// up next to the file itself: `shipped/` links the three files side by side.
#[path = "shipped/config.rs"]
pub mod config;

pub mod stages;
