//! `prompts`: a user's prompt file as the prompts table of `generate`.
//!
//! The file (relative to the pipeline file; digested into the key) is JSONL
//! (`.jsonl`/`.ndjson`/`.json`, one object per line), Parquet or CSV (with a
//! header), read with DataFusion; `column` names the text column. Rows keep
//! file order; `id` is the row number. The rows are split into `iterations`
//! contiguous slices (`iteration` 1..=N), so `generate@k` takes slice k. The
//! model's chat template is applied by `generate`, which wraps each prompt
//! as a user message (the raw text stays in this table).
//!
//! ```text
//! prompts  iteration Int32, id Int64, prompt Utf8
//! ```

use std::path::PathBuf;

use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};
use serde::{Deserialize, Serialize};

use super::common::{self, Col};
use crate::stage::{Outputs, ParamError, Stage, TaskContext, resolve_typed};
use crate::user_err;

/// Bump when the output changes for the same file and params.
pub const VERSION: u32 = 1;
pub const PROMPTS: &str = "prompts";

/// Params of `prompts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptsParams {
    /// The prompt file.
    pub path: PathBuf,
    /// The text column.
    #[serde(default = "default_column")]
    pub column: String,
    /// Number of slices (the pipeline's iterations).
    #[serde(default = "one")]
    pub iterations: usize,
}

fn default_column() -> String {
    "prompt".into()
}
fn one() -> usize {
    1
}

/// The `prompts` stage.
pub struct Prompts;

impl Stage for Prompts {
    fn kind(&self) -> &'static str {
        "prompts"
    }
    fn version(&self) -> u32 {
        VERSION
    }
    fn about(&self) -> &'static str {
        "a prompt file (JSONL, Parquet or CSV) split into per-iteration slices"
    }
    fn resolve_params(&self, raw: serde_json::Value) -> Result<serde_json::Value, ParamError> {
        let v = resolve_typed::<PromptsParams>(raw)?;
        if v["iterations"].as_u64().unwrap_or(0) == 0 {
            return Err(ParamError {
                path: "iterations".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(v)
    }
    fn outputs(&self, _params: &serde_json::Value) -> Outputs {
        Outputs {
            tables: vec![(PROMPTS.into(), schema())],
            checkpoint: false,
        }
    }
    fn external_files(&self, params: &serde_json::Value) -> Vec<PathBuf> {
        serde_json::from_value::<PromptsParams>(params.clone())
            .map(|p| vec![p.path])
            .unwrap_or_default()
    }
    fn run(&self, ctx: &mut TaskContext) -> anyhow::Result<()> {
        let p: PromptsParams = ctx.params()?;
        let path = ctx.pipeline_dir.join(&p.path);
        let texts = read_column(&path, &p.column)?;
        let n = texts.len();
        if n < p.iterations {
            anyhow::bail!(user_err!(
                "{}: {n} prompts cannot fill {} iterations; add prompts or lower `iterations`",
                path.display(),
                p.iterations
            ));
        }
        let per = n.div_ceil(p.iterations);
        let iters: Vec<i32> = (0..n).map(|i| (i / per) as i32 + 1).collect();
        let batch = arrow::record_batch::RecordBatch::try_new(
            schema(),
            vec![
                common::arr_i32(iters),
                common::arr_i64((0..n as i64).collect()),
                common::arr_str(texts),
            ],
        )?;
        ctx.log(&format!("{n} prompts from {}", path.display()));
        ctx.write_table(PROMPTS, &batch)
    }
}

fn schema() -> arrow::datatypes::SchemaRef {
    common::schema(&[("id", Col::I64, false), ("prompt", Col::Str, false)])
}

/// The non-null strings of `column` of the file at `path`, in file order.
pub fn read_column(path: &std::path::Path, column: &str) -> anyhow::Result<Vec<String>> {
    let shown = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let batches = rt.block_on(async {
        let ctx = SessionContext::new();
        let df = match ext.as_str() {
            "jsonl" | "ndjson" | "json" => {
                let dotted = format!(".{ext}");
                let o = JsonReadOptions::default().file_extension(&dotted);
                ctx.read_json(&shown, o).await
            }
            "parquet" => {
                ctx.read_parquet(&shown, ParquetReadOptions::default())
                    .await
            }
            "csv" => ctx.read_csv(&shown, CsvReadOptions::new()).await,
            _ => {
                return Err(anyhow::Error::from(user_err!(
                    "{shown}: unknown prompt file type {ext:?}; use .jsonl, .parquet or .csv"
                )));
            }
        }
        .map_err(|e| user_err!("{shown}: cannot read ({e})"))?;
        let names: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        if !names.iter().any(|n| n == column) {
            return Err(user_err!(
                "{shown}: no column {column:?} (it has: {}); set `column:` in the prompts stage's \
                 params",
                names.join(", ")
            )
            .into());
        }
        let df = df
            .select_columns(&[column])
            .map_err(|e| user_err!("{shown}: {e}"))?;
        df.collect()
            .await
            .map_err(|e| anyhow::Error::from(user_err!("{shown}: {e}")))
    })?;
    let mut out = Vec::new();
    for b in &batches {
        let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| user_err!("{shown}: column {column:?} is not text ({e})"))?;
        let s = col
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .ok_or_else(|| user_err!("{shown}: column {column:?} is not text"))?;
        out.extend(
            s.iter()
                .flatten()
                .filter(|t| !t.trim().is_empty())
                .map(str::to_string),
        );
    }
    if out.is_empty() {
        anyhow::bail!(user_err!(
            "{shown}: column {column:?} has no non-empty prompts; fill it or name another column"
        ));
    }
    Ok(out)
}
