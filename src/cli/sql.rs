//! `scir sql`: SQL over the public tables (logic in [`crate::sql`]).

use super::StoreArgs;
use std::io::Write as _;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::sql::{self, Format};

const AFTER_HELP: &str = "\
Tables: one per directory artifacts/tables/<name>/ (every file has `iteration` and
`arm` columns), plus the run records `scir_runs` (one row per `scir run`) and
`scir_tasks` (one row per task of each run: status ran|hit|failed|skipped, reason,
seconds, rows = total output rows, rows_json = rows per table, log).

Examples:
  scir sql 'SHOW TABLES'
  scir sql 'SHOW COLUMNS FROM prompts'
  scir sql 'SELECT iteration, count(*) FROM prompts GROUP BY iteration ORDER BY 1'
  scir sql --format csv 'SELECT * FROM eval_prompts LIMIT 5' > sample.csv
  scir sql 'SELECT task, status, reason, seconds FROM scir_tasks
            WHERE run_id = (SELECT max(run_id) FROM scir_runs)'
  scir sql --emit-rc > scir.rc && datafusion-cli -r scir.rc

Rows come back in no particular order without ORDER BY. String, regex, date and
math functions are there: length(s), substr(s, 1, 3), lower(s), regexp_like(s, 'a+'),
extract(hour FROM started_at), round(x, 2). SHOW FUNCTIONS lists them all.";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// Aligned text table.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Table => Format::Table,
            FormatArg::Csv => Format::Csv,
            FormatArg::Json => Format::Json,
            FormatArg::Ndjson => Format::Ndjson,
        }
    }
}

/// Query every artifact table and the run records with SQL (DataFusion).
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct SqlArgs {
    /// The SQL query (quote it for the shell).
    #[arg(required_unless_present = "emit_rc", conflicts_with = "emit_rc")]
    pub query: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: FormatArg,
    /// Print `CREATE EXTERNAL TABLE` lines for datafusion-cli instead of
    /// running a query (use with `datafusion-cli -r FILE`).
    #[arg(long)]
    pub emit_rc: bool,
}

pub fn run(args: &SqlArgs) -> anyhow::Result<ExitCode> {
    let text = match &args.query {
        Some(query) if !args.emit_rc => {
            let (batches, warnings) = sql::query(&args.store.artifacts, query)?;
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            sql::render(&batches, args.format.into())?
        }
        _ => sql::emit_rc(&args.store.artifacts)?,
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `scir sql … | head` closing the pipe early is not an error.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        result => {
            result?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
