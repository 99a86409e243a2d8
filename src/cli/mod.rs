//! The command line. `scir --help` is the entry point for users; every
//! subcommand lives in its own file.
//!
//! Exit status: 0 when everything went well, 1 when a task failed (or
//! `verify` found damage), 2 when the input was wrong ([`crate::Error::User`]:
//! a bad pipeline file, an unknown stage, a held lock with `--no-wait` …).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::engine::stage::Registry;

/// `println!` that ignores a closed stdout (`scir runs | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod dag;
pub mod export;
pub mod gc;
pub mod model;
pub mod report;
pub mod run;
pub mod runs;
pub mod sql;
pub mod status;
pub mod task;
pub mod verify;

/// scir: align a language model with Self-Consistent Internal Rewards.
///
/// A pipeline (pipeline.yaml) is a DAG of stages unrolled over iterations;
/// every task's output is cached by content, so changing one knob reruns only
/// what it affects. Start with `scir run`, look with `scir status`, `scir dag`
/// and `scir sql`.
#[derive(Debug, Parser)]
#[command(name = "scir", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring the pipeline's tasks up to date (cached: only what changed runs).
    ///
    /// Every task (stage@iteration) has a key computed from its stage's version,
    /// its own resolved params, its seed and the content digests of its inputs.
    /// A task whose key has an object in the store is a hit and does not run.
    ///
    /// Examples:
    ///   scir run                                 everything in ./pipeline.yaml
    ///   scir run --stage train --iter 2          train@2 and what it needs
    ///   scir run --stage generate --downstream   generate and everything after it
    ///   scir run --dry-run                       what would run, and why
    ///   scir run --executor slurm                each task as a Slurm job (README: Running on a cluster)
    ///   scir run --json | jq '.tasks[].status'   the run record as JSON
    ///
    /// Exit status: 0 ok, 1 a task failed, 2 bad input (pipeline file, flags).
    #[command(verbatim_doc_comment)]
    Run(run::RunArgs),
    /// Show which tasks are fresh or stale, and why.
    ///
    /// A stale task's reason compares the key material it would have now with
    /// the one of the object refs point at (what the last run produced).
    /// `--explain TASK` prints that comparison field by field, e.g.
    ///
    ///   scir status --explain train@1
    ///     params.lr: 0.0001 → 0.0003
    #[command(verbatim_doc_comment)]
    Status(status::StatusArgs),
    /// Show the unrolled DAG of tasks (ascii, dot or mermaid).
    ///
    /// One node per task (stage@iteration), edges from each input to its user,
    /// labelled with the input slot. Tasks shared by several arms are one node
    /// listing all of them.
    ///
    ///   scir dag --format dot | dot -Tsvg > dag.svg
    #[command(verbatim_doc_comment)]
    Dag(dag::DagArgs),
    /// List run records, or show one (`scir runs show latest`).
    ///
    /// Records are JSON files under artifacts/.scir/runs/<id>/run.json, one per
    /// `scir run`, with every task's key, status (ran, hit, failed, skipped),
    /// reason, seconds, row counts and log file. `scir sql` queries them too.
    Runs(runs::RunsArgs),
    /// Re-hash every object in the store against its manifest.
    ///
    /// Catches bit rot and edits of committed files. Exits 1 when something is
    /// damaged; `--fix` removes damaged objects so the next run recomputes them.
    /// A run never feeds a damaged object to a task: it re-hashes inputs first.
    Verify(verify::VerifyArgs),
    /// Remove objects no ref points at, and staging dirs of finished runs.
    ///
    /// Objects of the latest run of every task (refs.json) are kept; results of
    /// older params or code versions are removed. While any run is alive, no
    /// object is removed and its staging dir is never touched.
    Gc(gc::GcArgs),
    /// Query every artifact table with SQL (DataFusion).
    Sql(sql::SqlArgs),
    /// Print the eval results per arm and iteration; rebuild artifacts/report/.
    Report(report::ReportArgs),
    /// Inspect, score with and generate from a model checkpoint.
    #[command(subcommand)]
    Model(model::ModelCmd),
    /// Answer a benchmark (MT-Bench, AlpacaEval) with one model, for an external judge.
    Export(export::ExportArgs),
    /// Compute one task for the run that submitted it (what a Slurm job runs).
    #[command(hide = true)]
    Task(task::TaskArgs),
}

/// Where the artifacts live (every command takes it).
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The artifacts directory: public tables under tables/, scir's store under .scir/.
    /// Several can live side by side.
    #[arg(long, value_name = "DIR", default_value = "artifacts", global = true)]
    pub artifacts: PathBuf,
}

/// The pipeline file argument.
#[derive(Debug, Clone, Args)]
pub struct PipelineArg {
    /// The pipeline file.
    #[arg(value_name = "PIPELINE", default_value = "pipeline.yaml")]
    pub pipeline: PathBuf,
    /// Use this seed instead of the file's top-level `seed` (every task's seed,
    /// and so every key, follows it): repeat a run over seeds, each into its
    /// own --artifacts directory, and compare them with `scir report --seeds`.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// Parse the process arguments, run with the built-in stages, print errors.
pub fn main() -> ExitCode {
    main_with_registry(std::env::args_os(), &crate::stages::registry())
}

/// Parse `args` (program name first) and run with `registry`; prints errors
/// with their causes and returns the exit status. Tests use this to run the
/// CLI with test-only stages.
pub fn main_with_registry<I, T>(args: I, registry: &Registry) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    match run_with_registry(cli, registry) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(crate::error::exit_code(&err))
        }
    }
}

/// Run one parsed command line with the built-in stages.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    run_with_registry(cli, &crate::stages::registry())
}

/// Run one parsed command line with `registry`.
pub fn run_with_registry(cli: Cli, registry: &Registry) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(&args, registry),
        Command::Status(args) => status::run(&args, registry),
        Command::Dag(args) => dag::run(&args, registry),
        Command::Runs(args) => runs::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Gc(args) => gc::run(&args),
        Command::Sql(args) => sql::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Model(cmd) => model::run(&cmd),
        Command::Export(args) => export::run(&args, registry),
        Command::Task(args) => task::run(&args, registry),
    }
}

/// Load and unroll a pipeline.
pub fn load(
    arg: &PipelineArg,
    registry: &Registry,
) -> anyhow::Result<(crate::engine::config::Pipeline, crate::engine::dag::Dag)> {
    let mut pipeline = crate::engine::config::load(&arg.pipeline, registry)?;
    if let Some(seed) = arg.seed {
        pipeline.seed = seed;
    }
    let dag = crate::engine::dag::build(&pipeline)?;
    Ok((pipeline, dag))
}
