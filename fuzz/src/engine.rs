//! The part of scir's engine the pipeline parser needs (paths relative to `fuzz/src/`).

#[path = "../../src/engine/stage.rs"]
pub mod stage;
// config.rs declares `mod refs; mod resolve;`, which a `#[path]` module looks
// up next to the file itself: `shipped/` links the three files side by side.
#[path = "shipped/config.rs"]
pub mod config;
