//! The command line. `scir --help` is the entry point for users; every
//! subcommand lives in its own file.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod model;
pub mod sql;

/// scir: align a language model with Self-Consistent Internal Rewards.
#[derive(Debug, Parser)]
#[command(name = "scir", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Query every artifact table with SQL (DataFusion).
    Sql(sql::SqlArgs),
    /// Inspect, score with and generate from a model checkpoint.
    #[command(subcommand)]
    Model(model::ModelCmd),
}

/// Parse the process arguments, run, print errors with their causes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(crate::error::exit_code(&err))
        }
    }
}

/// Run one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Sql(args) => sql::run(&args),
        Command::Model(cmd) => model::run(&cmd),
    }
}
