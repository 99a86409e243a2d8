//! The built-in synthetic world. Its gold scorer is used only by eval.
//!
//! STAND-IN (engine branch): a minimal, deterministic version of the API the
//! DATA helper provides (`WorldParams`, `generate`, `table_schemas`), so the
//! engine can run the `world` stage end to end. Replaced at merge.

use std::sync::Arc;

use arrow::array::{Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

/// Knobs of the world.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldParams {
    /// Number of prompts in the pool.
    pub prompts: u32,
    /// Number of held-out prompts.
    pub heldout: u32,
}

impl Default for WorldParams {
    fn default() -> Self {
        WorldParams {
            prompts: 16,
            heldout: 4,
        }
    }
}

fn prompt_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("prompt", DataType::Utf8, false),
    ]))
}

/// The tables the world produces, with their schemas.
pub fn table_schemas() -> Vec<(String, SchemaRef)> {
    vec![
        ("prompts".into(), prompt_schema()),
        ("heldout_prompts".into(), prompt_schema()),
    ]
}

fn prompts(n: u32, offset: u32) -> anyhow::Result<RecordBatch> {
    let ids: Vec<i32> = (0..n)
        .map(|i| i32::try_from(i + offset))
        .collect::<Result<_, _>>()?;
    let text: Vec<String> = ids
        .iter()
        .map(|i| {
            let letters: String = (0..(3 + i % 5))
                .map(|j| (b'a' + ((i * 7 + j * 3) % 26) as u8) as char)
                .collect();
            format!("sort: {letters}")
        })
        .collect();
    Ok(RecordBatch::try_new(
        prompt_schema(),
        vec![
            Arc::new(Int32Array::from(ids)),
            Arc::new(StringArray::from(text)),
        ],
    )?)
}

/// Generate every table of the world.
pub fn generate(params: &WorldParams) -> anyhow::Result<Vec<(String, RecordBatch)>> {
    Ok(vec![
        ("prompts".into(), prompts(params.prompts, 0)?),
        (
            "heldout_prompts".into(),
            prompts(params.heldout, params.prompts)?,
        ),
    ])
}
