//! Tasks computed by another process: the run's side (submit a Slurm job, collect its
//! report) and the job's side (`scir task`: compute exactly one task of the pipeline).
//!
//! The job loads the same pipeline, finds the node by arm and task name, and computes its
//! key from the objects in the store; a key other than the one the run submitted (the
//! pipeline file or an input changed meanwhile) is an error, never a silent other result.
//! It takes the key's lock, re-checks, runs the stage and commits, exactly as a local run
//! does, but publishes nothing (refs and the public view are the run's). Its report, a
//! small JSON file, says `ran`, `hit` or the error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::slurm;
use super::workers::{Job, Start, Workers};
use super::{
    Compute, Executor, Outcome, Prepared, Run, RunOptions, Selection, State, is_user_error,
};
use crate::engine::config::Pipeline;
use crate::engine::dag::Dag;
use crate::engine::lock::Wait;
use crate::engine::runlog::TaskStatus;
use crate::engine::store::Store;
use crate::user_err;

/// What `scir task` computes.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    pub arm: String,
    /// The task's name (`generate@1`, `generate@1#2of4`).
    pub task: String,
    /// The key the submitting run computed.
    pub key: String,
    /// The submitting run (its staging dir and run dir hold this task's files).
    pub run_id: String,
    pub run_dir: PathBuf,
    /// Recompute even when the object exists (`scir run --force`).
    pub replace: bool,
    pub wait: Wait,
}

/// What `scir task` reports to the run that submitted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    pub status: TaskStatus,
    pub key: String,
    pub reason: String,
    /// The error, when `status` is `failed`.
    pub error: Option<String>,
    pub user_error: bool,
}

/// Compute one task for the run of `req` (the job's side).
pub fn run_task(store: &Store, pipeline: &Pipeline, dag: &Dag, req: &TaskRequest) -> TaskReport {
    match compute_one(store, pipeline, dag, req) {
        Ok(o) if matches!(o.state, State::Failed) => TaskReport {
            status: TaskStatus::Failed,
            key: o.key,
            error: Some(o.reason.clone()),
            reason: o.reason,
            user_error: o.user_error,
        },
        Ok(o) => TaskReport {
            status: o.status,
            key: o.key,
            reason: o.reason,
            error: None,
            user_error: false,
        },
        Err(e) => TaskReport {
            status: TaskStatus::Failed,
            key: req.key.clone(),
            reason: format!("{e:#}"),
            error: Some(format!("{e:#}")),
            user_error: is_user_error(&e),
        },
    }
}

fn compute_one(
    store: &Store,
    pipeline: &Pipeline,
    dag: &Dag,
    req: &TaskRequest,
) -> anyhow::Result<Outcome> {
    let Some(&i) = dag.by_arm.get(&(req.arm.clone(), req.task.clone())) else {
        return Err(user_err!(
            "the pipeline has no task {} in arm {:?} (`scir dag` lists them)",
            req.task,
            req.arm
        )
        .into());
    };
    let n = dag.nodes.len();
    let only = (0..n).map(|j| j == i).collect::<Vec<bool>>();
    let opts = RunOptions {
        force: req.replace,
        wait: req.wait,
        ..RunOptions::default()
    };
    let run = Run {
        store,
        pipeline,
        dag,
        opts: &opts,
        sel: Selection {
            named: only.clone(),
            target: only.clone(),
            in_plan: only,
            everything: false,
        },
        run_id: req.run_id.clone(),
        run_dir: req.run_dir.clone(),
        remote: true,
    };
    let states = vec![State::Pending; n];
    let prepared = run.prepare(i, &states, &mut BTreeMap::new(), None)?;
    let key = match &prepared {
        Prepared::Finished(o) => o.key.clone(),
        Prepared::Compute(c) => c.key.clone(),
    };
    if key != req.key {
        anyhow::bail!(
            "{}: its key is now {} but the run submitted {}: the pipeline file or an input \
             changed after `scir run` started; run it again",
            req.task,
            crate::engine::cache::short_key(&key),
            crate::engine::cache::short_key(&req.key)
        );
    }
    match prepared {
        Prepared::Finished(o) => Ok(o),
        Prepared::Compute(c) => run.compute_here(i, c, &states),
    }
}

impl Run<'_> {
    /// Start node `i` as a job running `scir task`.
    pub(super) fn start(
        &self,
        i: usize,
        c: &Compute,
        workers: &mut dyn Workers,
    ) -> anyhow::Result<Job> {
        let node = &self.dag.nodes[i];
        let stem = self
            .run_dir
            .join(workers.dir())
            .join(format!("{}.{}", node.task, node.arms[0]));
        let mut command: Vec<String> = vec![
            self.scir_exe()?,
            "task".into(),
            absolute(&self.pipeline.path)?,
            "--artifacts".into(),
            absolute(&self.store.root)?,
            "--seed".into(),
            self.pipeline.seed.to_string(),
            "--arm".into(),
            node.arms[0].clone(),
            "--task".into(),
            node.task.clone(),
            "--key".into(),
            c.key.clone(),
            "--run-id".into(),
            self.run_id.clone(),
            "--run-dir".into(),
            absolute(&self.run_dir)?,
            "--report".into(),
            slurm::report_path(&stem).display().to_string(),
        ];
        if c.forced {
            command.push("--replace".into());
        }
        if self.opts.wait == Wait::NoWait {
            command.push("--no-wait".into());
        }
        let name = format!("scir:{}", node.task);
        let job = workers.start(&Start {
            name: &name,
            stem,
            command,
            resources: &node.spec.resources,
        })?;
        eprintln!("{}: {} (log {})", node.task, job.what, job.log.display());
        Ok(job)
    }

    /// The `scir` binary jobs run: the Slurm config's, or this one.
    fn scir_exe(&self) -> anyhow::Result<String> {
        let exe = match &self.opts.executor {
            Executor::Slurm(cfg) => cfg.scir.clone(),
            _ => std::env::current_exe()?,
        };
        Ok(exe.display().to_string())
    }

    /// How node `i`'s job ended: its report, or the workers' word when it left none.
    pub(super) fn collect(
        &self,
        i: usize,
        job: &Job,
        c: Compute,
        workers: &mut dyn Workers,
        grace: Duration,
    ) -> anyhow::Result<Outcome> {
        let node = &self.dag.nodes[i];
        let Some(text) = slurm::read_report(&job.report, grace) else {
            let why = format!(
                "{} ended ({}) without finishing {}; nothing was committed; log: {}",
                job.what,
                workers.end_state(job),
                node.task,
                job.log.display()
            );
            eprintln!("error: {why}");
            return Ok(Outcome::failed(why, c.key));
        };
        let report: TaskReport = serde_json::from_str(&text).map_err(|e| {
            crate::internal_err!("{}: unreadable report of {}: {e}", node.task, job.what)
        })?;
        if let Some(error) = report.error {
            let why = format!("{error} ({}, log: {})", job.what, job.log.display());
            eprintln!("error: {why}");
            return Ok(Outcome {
                user_error: report.user_error,
                ..Outcome::failed(why, c.key)
            });
        }
        let manifest = self.store.manifest(&c.key).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: {} reported {} but object {} is not in the store (is the artifacts \
                 directory on a filesystem every node mounts?)",
                node.task,
                job.what,
                report.status,
                crate::engine::cache::short_key(&c.key)
            )
        })?;
        self.finish(i, c.key, manifest, report.status, report.reason)
    }
}

fn absolute(path: &Path) -> anyhow::Result<String> {
    Ok(std::path::absolute(path)?.display().to_string())
}
