//! `scir task`: compute exactly one task of a pipeline for a run that submitted it (what a
//! job of `scir run --executor slurm` runs; see `engine::sched::remote`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{PipelineArg, StoreArgs};
use crate::engine::lock::Wait;
use crate::engine::runlog::TaskStatus;
use crate::engine::sched::remote::{self, TaskRequest};
use crate::engine::stage::Registry;
use crate::engine::store::Store;

/// Compute one task for the run that submitted it (a Slurm job's command).
///
/// `scir run --executor slurm` writes this command into each job script; you do not
/// normally type it. The task's key, computed from the objects in the store, must equal
/// --key; the object is committed under the key's lock; refs and the public view are left
/// to the submitting run. The report (JSON: status ran | hit | failed, key, reason) goes to
/// --report. Exit status 0 when the object exists afterwards, 1 otherwise.
#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(flatten)]
    pub pipeline: PipelineArg,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The arm whose task this is.
    #[arg(long, value_name = "ARM")]
    pub arm: String,
    /// The task (`generate@1`, or a shard: `generate@1#2of4`).
    #[arg(long, value_name = "TASK")]
    pub task: String,
    /// The key the submitting run computed for it.
    #[arg(long, value_name = "KEY")]
    pub key: String,
    /// The submitting run's id.
    #[arg(long, value_name = "ID")]
    pub run_id: String,
    /// The submitting run's directory (the task's log goes there).
    #[arg(long, value_name = "DIR")]
    pub run_dir: PathBuf,
    /// Where to write the report.
    #[arg(long, value_name = "FILE")]
    pub report: PathBuf,
    /// Recompute even when the object exists.
    #[arg(long)]
    pub replace: bool,
    /// Fail instead of waiting for the key's lock.
    #[arg(long)]
    pub no_wait: bool,
}

/// Run `scir task`.
pub fn run(args: &TaskArgs, registry: &Registry) -> anyhow::Result<ExitCode> {
    let (pipeline, dag) = super::load(&args.pipeline, registry)?;
    let store = Store::new(&args.store.artifacts);
    let req = TaskRequest {
        arm: args.arm.clone(),
        task: args.task.clone(),
        key: args.key.clone(),
        run_id: args.run_id.clone(),
        run_dir: args.run_dir.clone(),
        replace: args.replace,
        wait: if args.no_wait {
            Wait::NoWait
        } else {
            Wait::Block
        },
    };
    let report = remote::run_task(&store, &pipeline, &dag, &req);
    crate::engine::files::write_json_atomic(&args.report, &report)?;
    eprintln!("{} {}: {}", report.status, args.task, report.reason);
    Ok(if report.status == TaskStatus::Failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
