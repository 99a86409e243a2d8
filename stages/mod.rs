//! One file per pipeline stage; this module is the registry.
//!
//! A stage implements [`crate::stage::Stage`]; [`registry`] maps each kind
//! name (as written in `pipeline.yaml`) to its implementation. The engine
//! takes the registry as a parameter, so tests add their own stages.
//!
//! Adding a stage `foo` (see `world.rs` for a complete one):
//!
//! ```text
//! 1. stages/foo.rs:  pub const VERSION: u32 = 1;      // bump when outputs change
//!                    #[derive(Serialize, Deserialize)] #[serde(deny_unknown_fields, default)]
//!                    pub struct FooParams { … }       // + Default
//!                    pub struct Foo;  impl Stage for Foo {
//!                      kind() -> "foo", version() -> VERSION, about() -> "one line",
//!                      resolve_params(raw) -> resolve_typed::<FooParams>(raw),
//!                      inputs() -> &[Slot { name: "model", kind: SlotKind::Checkpoint }, …],
//!                      default_bindings(params) -> vec![("model", "model@k-1".into())],
//!                      outputs(params) -> Outputs { tables: vec![("foo", schema)], checkpoint },
//!                      run(ctx) { let p: FooParams = ctx.params()?;
//!                                 let path = ctx.input("data")?.table("prompts")?;
//!                                 ctx.write_table("foo", &batch)?;   // or ctx.checkpoint_dir()
//!                      } }
//! 2. here:           pub mod foo;  static FOO: foo::Foo = foo::Foo;  add &FOO to `registry`.
//! 3. pipeline.yaml:  stages: { foo: { each_iteration: true, inputs: { data: world }, params: {…} } }
//! ```
//!
//! Every table carries an Int32 `iteration` column (first), contains no `arm`
//! column (the public view adds it), and is built in a deterministic row
//! order; sampling uses `ctx.seed` (derived per task, part of the key) with
//! per-row seeds, so results do not depend on thread count.

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
