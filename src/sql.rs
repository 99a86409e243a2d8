//! `scir sql`: DataFusion over the public tables and run records.
//!
//! Tables of a session over an artifacts directory `A`:
//!
//! * one listing table per directory `A/tables/<name>/`, named `<name>`, over
//!   the files in it whose names end in `.parquet` (`iter-NNNN.<arm>.parquet`,
//!   each with `iteration` and `arm` columns). Other names (the engine's temp
//!   files such as `x.parquet.new`) are ignored, so a half-written file never
//!   breaks a query. A directory without any `.parquet` file is skipped.
//! * `scir_runs` and `scir_tasks`, built in memory from the run records
//!   (see [`runs`] for their columns).
//!
//! `information_schema` is on, so `SHOW TABLES` (answered sorted, data tables
//! first) and `SHOW COLUMNS FROM t` work. The string, unicode, regex, datetime and math function families are
//! available, with their SQL syntax forms (`SUBSTRING(x FROM a FOR b)`,
//! `POSITION(a IN b)`, `EXTRACT(year FROM t)`); array functions are not.
//! Rows come back in no particular order unless the query has `ORDER BY`.
//!
//! A table whose files cannot be read (a corrupt or incompatible file) is
//! left out with a warning, so the others stay queryable.
//!
//! Errors in the query itself (syntax, unknown table or column, type errors)
//! are user errors carrying DataFusion's message.

pub mod runs;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::common::TableReference;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::context::SQLOptions;
use datafusion::functions::datetime::planner::DatetimeFunctionPlanner;
use datafusion::functions::unicode::planner::UnicodeFunctionPlanner;
use datafusion::logical_expr::{LogicalPlan, Statement};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

use crate::engine::layout::Layout;
use crate::user_err;

/// Directory of the public tables, relative to the artifacts root.
/// Extension of a real table file; anything else in a table dir is ignored.
pub const PARQUET_EXT: &str = ".parquet";
/// Table name of the run records.
pub const RUNS_TABLE: &str = "scir_runs";
/// Table name of the tasks of every run record.
pub const TASKS_TABLE: &str = "scir_tasks";

/// Output formats of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON array of objects (NULLs omitted).
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// The public tables found under `artifacts`: `(name, directory)`, sorted by
/// name; only directories holding at least one `.parquet` file.
pub fn table_dirs(artifacts: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let root = Layout::new(artifacts).tables_dir();
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut tables = Vec::new();
    for entry in std::fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))? {
        let dir = entry
            .with_context(|| format!("reading {}", root.display()))?
            .path();
        if !dir.is_dir() || !has_parquet_file(&dir)? {
            continue;
        }
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name == RUNS_TABLE || name == TASKS_TABLE {
            return Err(user_err!(
                "{}: the table name `{name}` is reserved for run records; rename the table",
                dir.display()
            )
            .into());
        }
        tables.push((name.to_string(), dir));
    }
    tables.sort();
    Ok(tables)
}

fn has_parquet_file(dir: &Path) -> anyhow::Result<bool> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(PARQUET_EXT) && entry.path().is_file() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Absolute form of `dir` with a trailing `/` (a directory for DataFusion).
fn dir_url(dir: &Path) -> anyhow::Result<String> {
    let abs = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let mut s = abs
        .to_str()
        .ok_or_else(|| user_err!("{}: path is not valid UTF-8", abs.display()))?
        .to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    Ok(s)
}

/// A DataFusion session with every table of `artifacts` registered.
/// Returns the session and warnings (skipped run records) for the user.
pub async fn session(artifacts: &Path) -> anyhow::Result<(SessionContext, Vec<String>)> {
    let tables = table_dirs(artifacts)?;
    let (records, mut warnings) = runs::load(artifacts)?;
    if tables.is_empty() && records.is_empty() {
        return Err(user_err!(
            "no tables and no run records under {}; run `scir run` first (or pass \
             --artifacts DIR for another artifacts directory)",
            artifacts.display()
        )
        .into());
    }
    let config = SessionConfig::new().with_information_schema(true);
    let mut ctx = SessionContext::new_with_config(config);
    // The function families are compiled in (datafusion-functions' default
    // features), but the planners for their SQL syntax forms are registered
    // only with DataFusion features scir leaves off to save build time.
    ctx.register_expr_planner(Arc::new(UnicodeFunctionPlanner))?;
    ctx.register_expr_planner(Arc::new(DatetimeFunctionPlanner))?;
    for (name, dir) in &tables {
        let options = ParquetReadOptions {
            file_extension: PARQUET_EXT,
            ..Default::default()
        };
        let registered = ctx
            .register_parquet(TableReference::bare(name.as_str()), dir_url(dir)?, options)
            .await;
        // One unreadable table (a corrupt file) must not hide all the others.
        if let Err(err) = registered {
            warnings.push(format!(
                "table `{name}` is unreadable and was left out ({}): {err}; `scir verify` checks \
                 the artifacts",
                dir.display()
            ));
        }
    }
    let memory = [
        (RUNS_TABLE, runs::runs_batch(&records)?),
        (TASKS_TABLE, runs::tasks_batch(&records)?),
    ];
    for (name, batch) in memory {
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        ctx.register_table(TableReference::bare(name), Arc::new(table))?;
    }
    Ok((ctx, warnings))
}

/// Run `sql` against a session; the result always holds at least one batch
/// (possibly empty) so that its schema survives. Read-only: see [`check_read_only`].
pub async fn query_in(ctx: &SessionContext, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let plan = ctx
        .state()
        .create_logical_plan(stable_show_tables(sql).unwrap_or(sql))
        .await
        .map_err(|e| user_err!("SQL error: {e}"))?;
    check_read_only(&plan)?;
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| user_err!("SQL error: {e}"))?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let mut batches = df
        .collect()
        .await
        .map_err(|e| user_err!("query failed: {e}"))?;
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(schema));
    }
    Ok(batches)
}

/// SQL over artifacts never writes: queries, `SHOW`, `EXPLAIN` and `SET` run; DDL
/// (`CREATE … TABLE`, `CREATE EXTERNAL TABLE`, `DROP`, views), DML (`INSERT`, `COPY`, …) and
/// other statements (transactions, `PREPARE`) are a user error that says how to save a
/// result instead. A query tool must not damage what it reads: an `INSERT` would add a file
/// under `tables/` that no task wrote.
pub fn check_read_only(plan: &LogicalPlan) -> anyhow::Result<()> {
    let refused = match plan {
        LogicalPlan::Statement(Statement::SetVariable(_)) => None,
        LogicalPlan::Statement(s) => Some(s.name().to_string()),
        _ => SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .verify_plan(plan)
            .err()
            .map(|e| e.strip_backtrace()),
    };
    match refused {
        None => Ok(()),
        Some(what) => Err(user_err!(
            "SQL over artifacts is read-only ({what}): scir sql runs queries, SHOW, EXPLAIN and \
             SET, and never writes into the artifacts\nTo keep a result, write it elsewhere: \
             scir sql \"SELECT …\" --format csv > result.csv (or --format json|ndjson)."
        )
        .into()),
    }
}

/// DataFusion lists `SHOW TABLES` in hash-map order; plain `SHOW TABLES` is
/// answered in a fixed order instead (the same columns, sorted).
fn stable_show_tables(sql: &str) -> Option<&'static str> {
    const SORTED: &str = "SELECT table_catalog, table_schema, table_name, table_type \
         FROM information_schema.tables ORDER BY table_schema <> 'public', table_schema, table_name";
    let words: Vec<String> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    (words == ["show", "tables"]).then_some(SORTED)
}

/// The rows of a user's CSV (header row) or Parquet data file (blocking), every CSV column
/// read as text: the readers `datasets.load_dataset("csv" | "parquet", …)` stands for.
pub fn read_data_file(path: &Path, csv: bool) -> anyhow::Result<Vec<RecordBatch>> {
    let shown = path.display().to_string();
    let fail = |e: datafusion::error::DataFusionError| user_err!("{shown}: cannot read ({e})");
    runtime()?.block_on(async {
        let ctx = SessionContext::new();
        let file = path
            .to_str()
            .ok_or_else(|| user_err!("{shown}: not a UTF-8 path"))?;
        let df = if csv {
            let opts = datafusion::prelude::CsvReadOptions::new()
                .has_header(true)
                .schema_infer_max_records(0)
                .file_extension("");
            ctx.read_csv(file, opts).await
        } else {
            ctx.read_parquet(file, ParquetReadOptions::default().file_extension(""))
                .await
        }
        .map_err(fail)?;
        Ok(df.collect().await.map_err(fail)?)
    })
}

/// The rows of `sql` over `artifacts` as rows of table `T`, each with its `iteration`: the
/// query returns `T`'s columns and `iteration`, and each is cast to `T`'s declared type (the
/// view's strings may come back as views or dictionaries).
pub fn query_rows<T: crate::table::Table>(
    artifacts: &Path,
    sql: &str,
) -> anyhow::Result<Vec<(i32, T)>> {
    let schema = T::schema();
    let mut out = Vec::new();
    for b in &query(artifacts, sql)?.0 {
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let col = b.column_by_name(f.name()).ok_or_else(|| {
                    crate::internal_err!("the query lost column {} of {}", f.name(), T::NAME)
                })?;
                Ok(arrow::compute::cast(col, f.data_type())?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let b = RecordBatch::try_new(schema.clone(), columns)?;
        let ks = crate::table::typed_column::<arrow::array::Int32Array>(
            &b,
            crate::table::ITERATION_COLUMN,
        )?;
        out.extend(ks.values().iter().copied().zip(T::from_batch(&b)?));
    }
    Ok(out)
}

/// Run one query over `artifacts` (blocking). Returns the batches and warnings.
pub fn query(artifacts: &Path, sql: &str) -> anyhow::Result<(Vec<RecordBatch>, Vec<String>)> {
    runtime()?.block_on(async {
        let (ctx, warnings) = session(artifacts).await?;
        Ok((query_in(&ctx, sql).await?, warnings))
    })
}

/// A single-threaded tokio runtime for one blocking call.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting the tokio runtime for DataFusion")
}

/// Render batches (all of one schema, at least one batch) as text.
pub fn render(batches: &[RecordBatch], format: Format) -> anyhow::Result<String> {
    let Some(first) = batches.first() else {
        return Ok(String::new());
    };
    let mut out = Vec::new();
    match format {
        Format::Table => {
            let table =
                arrow::util::pretty::pretty_format_batches_with_schema(first.schema(), batches)?;
            out.extend(format!("{table}\n").into_bytes());
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut out);
            writer.write_batches(&batches.iter().collect::<Vec<_>>())?;
            writer.finish()?;
            out.push(b'\n');
        }
        Format::Ndjson => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
            writer.write_batches(&batches.iter().collect::<Vec<_>>())?;
            writer.finish()?;
        }
    }
    String::from_utf8(out).context("rendered output is not UTF-8")
}

/// `CREATE EXTERNAL TABLE` statements for datafusion-cli (`datafusion-cli -r
/// FILE`), one per public table, with absolute locations.
pub fn emit_rc(artifacts: &Path) -> anyhow::Result<String> {
    let tables = table_dirs(artifacts)?;
    if tables.is_empty() {
        return Err(user_err!(
            "no tables under {}; run `scir run` first (or pass --artifacts DIR)",
            Layout::new(artifacts).tables_dir().display()
        )
        .into());
    }
    let mut out = String::from(
        "-- scir tables for datafusion-cli: datafusion-cli -r THIS_FILE\n\
         -- (scir_runs and scir_tasks exist only inside `scir sql`)\n",
    );
    for (name, dir) in tables {
        let location = dir_url(&dir)?.replace('\'', "''");
        writeln!(
            out,
            "CREATE EXTERNAL TABLE {} STORED AS PARQUET LOCATION '{location}';",
            quote_ident(&name)
        )?;
    }
    Ok(out)
}

/// `name` as it must appear in SQL: bare when it is a plain lower-case
/// identifier, double-quoted otherwise.
pub fn quote_ident(name: &str) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}
