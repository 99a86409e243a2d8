//! `scir model …`: inspect, score with and generate from a checkpoint.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ModelCmd {}

pub fn run(cmd: &ModelCmd) -> anyhow::Result<ExitCode> {
    match *cmd {}
}
