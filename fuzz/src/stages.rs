//! A registry of two small stage kinds for the config fuzzer: `src` (a table,
//! a `rows` param) and `gen` (each iteration, a model in and out), enough to
//! reach every validation path of `config::load` (inputs, references, the
//! model chain, typed params).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use crate::engine::stage::{Outputs, ParamError, Registry, Slot, SlotKind, Stage, TaskContext};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SrcParams {
    rows: u32,
    name: Option<String>,
}

struct Src;
struct Gen;

impl Stage for Src {
    fn kind(&self) -> &'static str {
        "src"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "a table"
    }
    fn resolve_params(&self, raw: serde_json::Value) -> Result<serde_json::Value, ParamError> {
        crate::engine::stage::resolve_typed::<SrcParams>(raw)
    }
    fn outputs(&self, _params: &serde_json::Value) -> Outputs {
        let schema = Schema::new(vec![Field::new("iteration", DataType::Int32, false)]);
        Outputs {
            tables: vec![("nums".into(), Arc::new(schema))],
            checkpoint: false,
        }
    }
    fn run(&self, _ctx: &mut TaskContext) -> anyhow::Result<()> {
        Ok(())
    }
}

const GEN_SLOTS: &[Slot] = &[
    Slot {
        name: "model",
        kind: SlotKind::Checkpoint,
    },
    Slot {
        name: "data",
        kind: SlotKind::Tables,
    },
];

impl Stage for Gen {
    fn kind(&self) -> &'static str {
        "gen"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "a model step"
    }
    fn resolve_params(&self, raw: serde_json::Value) -> Result<serde_json::Value, ParamError> {
        crate::engine::stage::resolve_typed::<SrcParams>(raw)
    }
    fn inputs(&self) -> &'static [Slot] {
        GEN_SLOTS
    }
    fn optional_inputs(&self) -> &'static [&'static str] {
        &["data"]
    }
    fn default_bindings(&self, _params: &serde_json::Value) -> Vec<(&'static str, String)> {
        vec![("model", "model@k-1".into())]
    }
    fn outputs(&self, _params: &serde_json::Value) -> Outputs {
        Outputs {
            tables: Vec::new(),
            checkpoint: true,
        }
    }
    fn run(&self, _ctx: &mut TaskContext) -> anyhow::Result<()> {
        Ok(())
    }
}

static SRC: Src = Src;
static GEN: Gen = Gen;

/// The fuzzers' registry.
pub fn registry() -> Registry {
    let stages: [&'static dyn Stage; 2] = [&SRC, &GEN];
    stages.into_iter().map(|s| (s.kind(), s)).collect()
}
