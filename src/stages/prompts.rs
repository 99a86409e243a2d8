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
//! Writes [`prompts`](crate::tables::prompts) ([`PromptRow`]).

use std::path::PathBuf;

use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};
use serde::{Deserialize, Serialize};

use crate::engine::stage::{DeclaredTable, ParamError, Stage, TaskContext};
use crate::table::Table;
use crate::tables::prompts::PromptRow;
use crate::user_err;

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
    type Params = PromptsParams;
    /// Bump when the output changes for the same file and params.
    const VERSION: u32 = 1;
    const TABLES: &'static [DeclaredTable] = &[PromptRow::declared];

    fn validate(&self, p: &PromptsParams) -> Result<(), ParamError> {
        if p.iterations == 0 {
            return Err(ParamError::at("iterations", "must be at least 1"));
        }
        Ok(())
    }
    fn external_files(&self, p: &PromptsParams) -> Vec<PathBuf> {
        vec![p.path.clone()]
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
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
        let rows = texts
            .into_iter()
            .enumerate()
            .map(|(i, prompt)| PromptRow {
                id: i as i64,
                prompt,
            })
            .collect();
        ctx.log(&format!("{n} prompts from {}", path.display()));
        let batch = PromptRow::batch_at(iters, rows)?;
        ctx.write_table(PromptRow::NAME, &batch)
    }
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
