//! A registry of two small stage kinds for the config fuzzer: `src` (a table,
//! a `rows` param) and `gen` (each iteration, a model in and out), enough to
//! reach every validation path of `config::load` (inputs, references, the
//! model chain, typed params).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use crate::engine::stage::{DynStage, Outputs, Registry, Slot, Stage, TaskContext};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SrcParams {
    rows: u32,
    name: Option<String>,
}

struct Src;
struct Gen;

impl Stage for Src {
    type Params = SrcParams;
    const KIND: &'static str = "src";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "a table";
    fn outputs(&self, _params: &SrcParams) -> Outputs {
        let schema = Schema::new(vec![Field::new("iteration", DataType::Int32, false)]);
        Outputs::tables(vec![("nums".into(), Arc::new(schema))])
    }
    fn run(&self, _params: &SrcParams, _ctx: &mut TaskContext) -> anyhow::Result<()> {
        Ok(())
    }
}

impl Stage for Gen {
    type Params = SrcParams;
    const KIND: &'static str = "gen";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "a model step";
    const INPUTS: &'static [Slot] = &[
        Slot::checkpoint("model").by_default("model@k-1"),
        Slot::tables("data").optional(),
    ];
    const CHECKPOINT: bool = true;
    fn run(&self, _params: &SrcParams, _ctx: &mut TaskContext) -> anyhow::Result<()> {
        Ok(())
    }
}

static SRC: Src = Src;
static GEN: Gen = Gen;

/// The fuzzers' registry.
pub fn registry() -> Registry {
    let stages: [&'static dyn DynStage; 2] = [&SRC, &GEN];
    stages.into_iter().map(|s| (s.kind(), s)).collect()
}
