//! A registry of two small stage kinds for the config fuzzer: `src` (a table,
//! a `rows` param) and `gen` (each iteration, a model in and out), enough to
//! reach every validation path of `config::load` (inputs, references, the
//! model chain, typed params).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use crate::engine::stage::{
    Outputs, Registry, Slot, Stage, StageKind, TaskContext, registry_of,
};

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
    const VERSION: u32 = 1;
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
    const VERSION: u32 = 1;
    const INPUTS: &'static [Slot] = &[
        Slot::checkpoint("model").by_default("model@k-1"),
        Slot::tables("data").optional(),
    ];
    const CHECKPOINT: bool = true;
    fn run(&self, _params: &SrcParams, _ctx: &mut TaskContext) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The fuzzers' registry.
pub fn registry() -> Registry {
    registry_of([
        StageKind::new("src", &Src, "a table"),
        StageKind::new("gen", &Gen, "a model step"),
    ])
}
