//! `scir runs`: run records.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::StoreArgs;
use crate::engine::cache::short_key;
use crate::engine::runlog::{self, RunRecord, TaskStatus};
use crate::engine::store::Store;
use crate::user_err;

/// List run records (oldest first), or show one with `scir runs show ID`
/// (`latest` names the newest). Records are JSON files under
/// artifacts/.scir/runs/<id>/run.json; `scir sql` queries them too.
#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: Option<RunsCmd>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// Show one run's tasks.
    Show {
        /// A run id, or `latest`.
        id: String,
        /// Print the record as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run `scir runs`.
pub fn run(args: &RunsArgs) -> anyhow::Result<ExitCode> {
    let store = Store::new(&args.store.artifacts);
    let records = runlog::list(&store.layout.runs_dir())?;
    match &args.command {
        None => {
            for r in &records {
                outln!(
                    "{}  {:<6}  {}  {}",
                    r.run_id,
                    r.status,
                    counts(r),
                    r.argv.join(" ")
                );
            }
            if records.is_empty() {
                outln!("no runs in {}", store.root.display());
            }
        }
        Some(RunsCmd::Show { id, json }) => {
            let record = if id == "latest" {
                records.last().cloned()
            } else {
                records.iter().find(|r| &r.run_id == id).cloned()
            };
            let Some(r) = record else {
                return Err(user_err!(
                    "no run {id:?} in {}\nList them with `scir runs`.",
                    store.root.display()
                )
                .into());
            };
            if *json {
                outln!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                show(&r);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn counts(r: &RunRecord) -> String {
    let counts: Vec<String> = TaskStatus::ALL
        .iter()
        .map(|&s| format!("{s} {}", r.tasks.iter().filter(|t| t.status == s).count()))
        .collect();
    counts.join(" ")
}

fn show(r: &RunRecord) {
    outln!(
        "run {} ({}) {} → {}",
        r.run_id,
        r.status,
        r.started_at,
        r.finished_at
    );
    outln!(
        "pipeline {} ({})",
        r.pipeline,
        short_key(&r.pipeline_digest)
    );
    for t in &r.tasks {
        outln!(
            "  {:<7} {:<24} [{}] {:>8.2}s {} {}",
            t.status,
            t.task,
            t.arm,
            t.seconds,
            short_key(&t.key),
            t.reason
        );
    }
}
