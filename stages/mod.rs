//! One file per pipeline stage; this module is the registry.
//!
//! A stage implements [`crate::stage::Stage`]; [`registry`] maps each kind
//! name (as written in `pipeline.yaml`) to its implementation. The engine
//! takes the registry as a parameter, so tests add their own stages.

use crate::stage::{Registry, Stage};

pub mod eval;
pub mod world;

static EVAL: eval::Eval = eval::Eval;
static EVAL_LABELS: eval::EvalLabels = eval::EvalLabels;
static WORLD: world::World = world::World;

/// Every built-in stage kind.
pub fn registry() -> Registry {
    let stages: [&'static dyn Stage; 3] = [&EVAL, &EVAL_LABELS, &WORLD];
    stages.into_iter().map(|s| (s.kind(), s)).collect()
}
