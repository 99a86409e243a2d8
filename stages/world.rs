//! `world`: the built-in world's data (prompt pool, seed data, held-out sets).
//!
//! Glue around [`crate::world`]: params are [`WorldParams`]; every table gets
//! the `iteration` column (0) when the world does not add one itself.

use crate::stage::{Outputs, ParamError, Stage, TaskContext, resolve_typed};
use crate::table;
use crate::world::{self, WorldParams};

/// Bump when the world's tables change for the same params.
pub const VERSION: u32 = 1;

/// The `world` stage.
pub struct World;

impl Stage for World {
    fn kind(&self) -> &'static str {
        "world"
    }
    fn version(&self) -> u32 {
        VERSION
    }
    fn about(&self) -> &'static str {
        "the built-in synthetic world's prompts, seed data and held-out sets"
    }
    fn resolve_params(&self, raw: serde_json::Value) -> Result<serde_json::Value, ParamError> {
        resolve_typed::<WorldParams>(raw)
    }
    fn outputs(&self, _params: &serde_json::Value) -> Outputs {
        let tables = world::table_schemas()
            .into_iter()
            .map(|(n, s)| (n, table::schema_with_iteration(&s)))
            .collect();
        Outputs {
            tables,
            checkpoint: false,
        }
    }
    fn run(&self, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let params: WorldParams = ctx.params()?;
        for (name, batch) in world::generate(&params)? {
            ctx.log(&format!("{name}: {} rows", batch.num_rows()));
            let batch = table::with_iteration(&batch, ctx.iteration)?;
            ctx.write_table(&name, &batch)?;
        }
        Ok(())
    }
}
