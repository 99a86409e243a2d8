//! The run loop: which planned node next, and where it is computed.
//!
//! Local: every planned node in topological order, each computed in this process before
//! the next (its inputs are always done). With workers (Slurm jobs, or `--jobs N` child
//! processes, [`super::workers`]): every node whose planned inputs (and shards) are done is
//! prepared at once; a hit is settled here, a node to compute is started as a job while
//! the workers have room; the loop then polls and settles ended jobs, until nothing is
//! pending. Ctrl-C (or SIGTERM) cancels the started jobs and ends the run; what finished is
//! committed, so a rerun picks it up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::workers::{Job, ProcessWorkers, SlurmWorkers, Workers};
use super::{Compute, Executor, Outcome, Prepared, Run, State, is_user_error};
use crate::engine::runlog::TaskRecord;
use crate::engine::store::Manifest;

/// How long a finished job's report may take to appear on a shared filesystem.
const REPORT_GRACE: Duration = Duration::from_secs(5);

/// Bring every planned node up to date; each node's final state and the task records.
pub(super) fn drive(run: &Run) -> anyhow::Result<(Vec<State>, Vec<TaskRecord>)> {
    let n = run.dag.nodes.len();
    let mut d = Driver {
        run,
        states: vec![State::Pending; n],
        memo: BTreeMap::new(),
        tasks: Vec::new(),
        stopped_by: None,
    };
    match &run.opts.executor {
        Executor::Local => d.local()?,
        Executor::Processes(jobs) => d.with_workers(&mut ProcessWorkers::new(*jobs))?,
        Executor::Slurm(cfg) => d.with_workers(&mut SlurmWorkers(cfg))?,
    }
    Ok((d.states, d.tasks))
}

struct Driver<'r, 'a> {
    run: &'r Run<'a>,
    states: Vec<State>,
    memo: BTreeMap<usize, Option<Manifest>>,
    tasks: Vec<TaskRecord>,
    stopped_by: Option<String>,
}

/// A submitted node.
struct Flying {
    i: usize,
    job: Job,
    compute: Compute,
    started: Instant,
}

impl Driver<'_, '_> {
    fn local(&mut self) -> anyhow::Result<()> {
        for i in (0..self.states.len()).filter(|i| self.run.sel.in_plan[*i]) {
            let started = Instant::now();
            let stopped = self.stopped_by.clone();
            let outcome =
                match self
                    .run
                    .prepare(i, &self.states, &mut self.memo, stopped.as_deref())
                {
                    Ok(Prepared::Finished(o)) => Ok(o),
                    Ok(Prepared::Compute(c)) => self.run.compute_here(i, c, &self.states),
                    Err(e) => Err(e),
                };
            self.settle(i, outcome, started)?;
        }
        Ok(())
    }

    fn with_workers(&mut self, workers: &mut dyn Workers) -> anyhow::Result<()> {
        install_interrupt_handler();
        let mut flying: Vec<Flying> = Vec::new();
        let result = self.work(workers, &mut flying);
        if result.is_err() {
            // A user error ends the run: its jobs must not outlive it.
            workers.cancel(&flying.iter().map(|f| &f.job).collect::<Vec<_>>());
        }
        result
    }

    fn work(&mut self, workers: &mut dyn Workers, flying: &mut Vec<Flying>) -> anyhow::Result<()> {
        loop {
            let progressed = self.start_ready(workers, flying)?;
            if flying.is_empty() {
                if progressed {
                    continue;
                }
                return Ok(());
            }
            if INTERRUPTED.load(Ordering::SeqCst) {
                return self.interrupted(workers, std::mem::take(flying));
            }
            std::thread::sleep(workers.poll());
            let jobs: Vec<&Job> = flying.iter().map(|f| &f.job).collect();
            let ended = workers.ended(&jobs)?;
            let (done, still): (Vec<Flying>, Vec<Flying>) = std::mem::take(flying)
                .into_iter()
                .partition(|f| ended.contains(&f.job.id));
            *flying = still;
            for f in done {
                let outcome = self
                    .run
                    .collect(f.i, &f.job, f.compute, workers, REPORT_GRACE);
                self.settle(f.i, outcome, f.started)?;
            }
        }
    }

    /// Prepare every ready pending node: settle hits and skips, start the rest while the
    /// workers have room.
    fn start_ready(
        &mut self,
        workers: &mut dyn Workers,
        flying: &mut Vec<Flying>,
    ) -> anyhow::Result<bool> {
        let mut progressed = false;
        for i in 0..self.states.len() {
            if !self.ready(i) || flying.iter().any(|f| f.i == i) {
                continue;
            }
            if !workers.has_room(flying.len()) {
                break;
            }
            progressed = true;
            let started = Instant::now();
            let stopped = self.stopped_by.clone();
            match self
                .run
                .prepare(i, &self.states, &mut self.memo, stopped.as_deref())
            {
                Ok(Prepared::Compute(compute)) => match self.run.start(i, &compute, workers) {
                    Ok(job) => flying.push(Flying {
                        i,
                        job,
                        compute,
                        started,
                    }),
                    Err(e) => self.settle(i, Err(e), started)?,
                },
                Ok(Prepared::Finished(o)) => self.settle(i, Ok(o), started)?,
                Err(e) => self.settle(i, Err(e), started)?,
            }
        }
        Ok(progressed)
    }

    /// Planned, pending, and every planned input and shard settled.
    fn ready(&self, i: usize) -> bool {
        let (sel, node) = (&self.run.sel, &self.run.dag.nodes[i]);
        sel.in_plan[i]
            && matches!(self.states[i], State::Pending)
            && node
                .inputs
                .values()
                .chain(&node.parts)
                .all(|u| !sel.in_plan[*u] || !matches!(self.states[*u], State::Pending))
    }

    /// Ctrl-C: cancel the jobs, record them failed and everything else not run.
    fn interrupted(
        &mut self,
        workers: &mut dyn Workers,
        flying: Vec<Flying>,
    ) -> anyhow::Result<()> {
        let what: Vec<&str> = flying.iter().map(|f| f.job.what.as_str()).collect();
        eprintln!("interrupted: cancelling {}", what.join(", "));
        workers.cancel(&flying.iter().map(|f| &f.job).collect::<Vec<_>>());
        for f in flying {
            let why = format!(
                "interrupted: {} cancelled; nothing was committed; log: {}",
                f.job.what,
                f.job.log.display()
            );
            self.settle(f.i, Ok(Outcome::failed(why, f.compute.key)), f.started)?;
        }
        for i in 0..self.states.len() {
            if self.run.sel.in_plan[i] && matches!(self.states[i], State::Pending) {
                let skipped = Outcome::skipped("not run: the run was interrupted".into());
                self.settle(i, Ok(skipped), Instant::now())?;
            }
        }
        Ok(())
    }

    /// Record how node `i` ended (a user error ends the run).
    fn settle(
        &mut self,
        i: usize,
        outcome: anyhow::Result<Outcome>,
        started: Instant,
    ) -> anyhow::Result<()> {
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) if is_user_error(&e) => return Err(e),
            Err(e) => {
                eprintln!("error: {e:#}");
                Outcome::failed(format!("{e:#}"), String::new())
            }
        };
        if matches!(outcome.state, State::Failed)
            && !self.run.opts.keep_going
            && self.stopped_by.is_none()
        {
            self.stopped_by = Some(self.run.dag.nodes[i].task.clone());
        }
        let seconds = started.elapsed().as_secs_f64();
        self.tasks.extend(self.run.records(i, &outcome, seconds));
        self.states[i] = outcome.state;
        Ok(())
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The first Ctrl-C or SIGTERM asks the loop to cancel its jobs; a second exits at once.
fn install_interrupt_handler() {
    // Fails only when a handler is already installed (a second run in this process).
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("stopping: cancelling the started jobs (Ctrl-C again to exit now)");
    });
}
