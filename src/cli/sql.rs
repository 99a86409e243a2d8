//! `scir sql`: SQL over the public tables.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query.
    pub query: Option<String>,
}

pub fn run(_args: &SqlArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("scir sql is not implemented yet")
}
