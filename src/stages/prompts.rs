//! `prompts`: a user's prompt file as the prompts table of `generate`.
//!
//! The file (relative to the pipeline file; digested into the key) is JSONL
//! (`.jsonl`/`.ndjson`/`.json`, one object per line), Parquet or CSV (with a
//! header) ([`records`]); `column` names the text column. Rows keep
//! file order; `id` is the row number. The rows are split into `iterations`
//! contiguous slices (`iteration` 1..=N), so `generate@k` takes slice k. The
//! model's chat template is applied by `generate`, which wraps each prompt
//! as a user message (the raw text stays in this table).
//!
//! Writes [`prompts`](crate::tables::prompts) ([`PromptRow`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::records;

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
    let shown = path.display();
    let records = records::read(path)?;
    if !records.iter().any(|r| r.value.get(column).is_some()) {
        let names: Vec<String> = records
            .first()
            .and_then(|r| r.value.as_object())
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        anyhow::bail!(user_err!(
            "{shown}: no column {column:?} (it has: {}); set `column:` in the prompts stage's \
             params",
            names.join(", ")
        ));
    }
    let mut out = Vec::new();
    for r in &records {
        let text = match r.value.get(column) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => s.clone(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            Some(_) => anyhow::bail!(user_err!("{}: column {column:?} is not text", r.at)),
        };
        if !text.trim().is_empty() {
            out.push(text);
        }
    }
    if out.is_empty() {
        anyhow::bail!(user_err!(
            "{shown}: column {column:?} has no non-empty prompts; fill it or name another column"
        ));
    }
    Ok(out)
}
