//! `world`: the built-in world's training data (prompt pool, IFT and EFT seed
//! data) and its parameters; `heldout`: its held-out sets (eval only).
//!
//! Glue around [`crate::world`]. Both tables sets come from one draw of
//! [`world::generate`] (held-out prompts are claimed first, so the sets are
//! disjoint), but each stage writes only its part:
//!
//! ```text
//! world    params: WorldParams   → prompts, ift, eft, world_params
//! heldout  input:  world         → eval_prompts, gold_pairs
//! ```
//!
//! `heldout` has no params of its own: it reads the resolved [`WorldParams`]
//! from `world_params` (one row, canonical JSON), so the two can never
//! disagree, and its key follows the world's. No training stage has `heldout`
//! upstream (a test walks the default pipeline's DAG to prove it); only the
//! eval stages bind it. Every table gets the `iteration` column (0).

use arrow::array::{Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;

use crate::engine::stage::{Outputs, Slot, Stage, TaskContext};
use crate::table;
use crate::world::{self, HELDOUT_TABLES, TRAINING_TABLES, WorldParams};

/// The one-row table holding the world's resolved params.
pub const PARAMS_TABLE: &str = "world_params";

/// The `world` stage.
pub struct World;

/// The `heldout` stage.
pub struct Heldout;

impl Stage for World {
    type Params = WorldParams;
    /// Bump when the world's tables change for the same params.
    const VERSION: u32 = 2;

    fn outputs(&self, _params: &Self::Params) -> Outputs {
        let mut tables = part_schemas(&TRAINING_TABLES);
        tables.push((PARAMS_TABLE.into(), params_schema()));
        Outputs {
            tables,
            checkpoint: false,
        }
    }
    fn run(&self, params: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let mut params = params.clone();
        params.seed = params.seed.wrapping_add(ctx.seed);
        write_part(ctx, &params, &TRAINING_TABLES)?;
        let json = serde_json::to_string(&serde_json::to_value(&params)?)?;
        let batch = RecordBatch::try_new(
            params_schema(),
            vec![
                Arc::new(arrow::array::Int32Array::from(vec![ctx.iteration as i32])),
                Arc::new(StringArray::from(vec![json])),
            ],
        )?;
        ctx.write_table(PARAMS_TABLE, &batch)
    }
}

impl Stage for Heldout {
    type Params = NoParams;
    /// Bump when the held-out tables change for the same world.
    const VERSION: u32 = 1;
    const INPUTS: &'static [Slot] = &[Slot::tables("world").by_default("world")];

    fn outputs(&self, _params: &Self::Params) -> Outputs {
        Outputs::tables(part_schemas(&HELDOUT_TABLES))
    }
    fn run(&self, _params: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let path = ctx.input("world")?.table(PARAMS_TABLE)?.to_path_buf();
        let params = read_params(&path)?;
        write_part(ctx, &params, &HELDOUT_TABLES)
    }
}

/// `heldout` takes no params.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

fn params_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("iteration", DataType::Int32, false),
        Field::new("params", DataType::Utf8, false),
    ]))
}

fn part_schemas(names: &[&str]) -> Vec<(String, SchemaRef)> {
    world::table_schemas()
        .into_iter()
        .filter(|(n, _)| names.contains(&n.as_str()))
        .collect()
}

/// Generate the world and write the tables named in `names`.
fn write_part(ctx: &mut TaskContext, params: &WorldParams, names: &[&str]) -> anyhow::Result<()> {
    for (name, batch) in world::generate(params)? {
        if names.contains(&name.as_str()) {
            ctx.log(&format!("{name}: {} rows", batch.num_rows()));
            ctx.write_table(&name, &batch)?;
        }
    }
    Ok(())
}

/// The world's params from its `world_params` table.
fn read_params(path: &std::path::Path) -> anyhow::Result<WorldParams> {
    let batches = table::read(path)?;
    let batch = batches.first().filter(|b| b.num_rows() == 1).ok_or_else(|| {
        crate::user_err!(
            "{}: expected one row of world params; bind `heldout`'s input `world` to a `world` task",
            path.display()
        )
    })?;
    let col = batch
        .column_by_name("params")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .filter(|c| !c.is_null(0))
        .ok_or_else(|| crate::user_err!("{}: no `params` column", path.display()))?;
    serde_json::from_str(col.value(0))
        .map_err(|e| crate::user_err!("{}: world params do not parse: {e}", path.display()).into())
}
