//! The executor: brings the selected tasks up to date, in topological order.
//!
//! For each node: compute its key from its inputs' output digests; if the
//! object exists it is a **hit**; otherwise take the key's lock (waiting, with
//! a message naming the holder, unless `--no-wait`), re-check, run, commit.
//! Then, under the short global lock, point refs of every arm that lists the
//! node at the key and republish the public view. Two concurrent runs thus
//! compute each key once. Tasks run one at a time (a stage may use every core
//! inside); results do not depend on this order.
//!
//! Selection (`--stage S [--iter N]`): the targets are S's tasks (or all);
//! `--downstream` adds everything that depends on them; without `--single`
//! their upstream is brought up to date too, with it upstream objects must
//! already exist (the error names the command that builds them).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::engine::cache::{KEY_SCHEME, KeyMaterial};
use crate::engine::config::Pipeline;
use crate::engine::dag::{Dag, Node};
use crate::engine::lock::{self, Holder, Wait};
use crate::engine::runlog::{self, RunRecord, RunStatus, TaskRecord, TaskStatus};
use crate::engine::store::maintain::RUN_LOCK;
use crate::engine::store::{Manifest, Store};
use crate::user_err;

mod drive;
mod exec;
mod publish;
pub mod remote;
mod select;
pub mod slurm;
pub mod workers;

use publish::{finish_full_run, publish};

pub use select::{Selection, select};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only this arm's tasks (`None`: every arm).
    pub arm: Option<String>,
    pub stage: Option<String>,
    pub iter: Option<u32>,
    pub single: bool,
    pub downstream: bool,
    pub force: bool,
    pub keep_going: bool,
    pub wait: Wait,
    pub show_progress: bool,
    pub argv: Vec<String>,
    /// Where tasks are computed.
    pub executor: Executor,
}

/// Where a run computes its tasks.
#[derive(Debug, Clone, Default)]
pub enum Executor {
    /// In this process, one task at a time (a stage may use every core inside).
    #[default]
    Local,
    /// On this machine, each task as a `scir task` child process, this many at a time
    /// (shards and independent tasks overlap; the cores are shared out).
    Processes(usize),
    /// Each task as a Slurm batch job, as many at a time as the cluster runs.
    Slurm(slurm::SlurmConfig),
}

/// Per-node state during a run.
#[derive(Debug, Clone)]
enum State {
    Pending,
    Done(Box<Manifest>),
    Failed,
    Skipped,
    /// A shard whose merged object exists: not computed.
    NotNeeded,
}

/// The key material of `node` given its inputs' manifests.
pub fn material(
    store: &Store,
    node: &Node,
    inputs: &BTreeMap<String, &Manifest>,
) -> anyhow::Result<KeyMaterial> {
    let mut externals = BTreeMap::new();
    for (name, path) in &node.spec.externals {
        externals.insert(name.clone(), store.stat.digest_path(path)?);
    }
    Ok(KeyMaterial {
        scheme: KEY_SCHEME,
        kind: node.spec.stage.kind().to_string(),
        version: node.spec.stage.version(),
        iteration: node.iteration,
        seed: node.seed,
        params: crate::engine::stage::keyed_params(&*node.spec.stage, &node.spec.params.json),
        inputs: inputs
            .iter()
            .map(|(s, m)| (s.clone(), m.output_digest.clone()))
            .collect(),
        externals,
        shard: node.shard,
    })
}

/// The committed object of `node` for the current inputs, found without
/// running anything (`None` when it or an upstream object is missing).
pub fn probe(
    store: &Store,
    dag: &Dag,
    i: usize,
    memo: &mut BTreeMap<usize, Option<Manifest>>,
) -> Option<Manifest> {
    if let Some(m) = memo.get(&i) {
        return m.clone();
    }
    let node = &dag.nodes[i];
    let mut ups = BTreeMap::new();
    for (slot, up) in &node.inputs {
        ups.insert(slot.clone(), probe(store, dag, *up, memo)?);
    }
    let refs: BTreeMap<String, &Manifest> = ups.iter().map(|(s, m)| (s.clone(), m)).collect();
    let found = material(store, node, &refs)
        .ok()
        .and_then(|m| store.manifest(&m.key()));
    memo.insert(i, found.clone());
    found
}

/// Run the selected tasks; always returns the run record (status `failed`
/// when a task failed). User errors (bad selection, missing upstream with
/// `--single`, a held lock with `--no-wait`) are returned before anything runs.
pub fn run(
    store: &Store,
    pipeline: &Pipeline,
    dag: &Dag,
    opts: &RunOptions,
) -> anyhow::Result<RunRecord> {
    let sel = select(dag, opts)?;
    if opts.single {
        check_upstream(store, pipeline, dag, &sel)?;
    }
    store.init()?;
    let started_at = runlog::now_rfc3339();
    let (run_id, run_dir) = runlog::create_run_dir(&store.layout.runs_dir(), &started_at)?;
    let me = Holder::me(&run_id, "running");
    let _alive = lock::acquire(&run_dir.join(RUN_LOCK), &me, Wait::NoWait, &|_| {})?;
    let run = Run {
        store,
        pipeline,
        dag,
        opts,
        sel,
        run_id,
        run_dir,
        remote: false,
    };
    let (states, tasks) = drive::drive(&run)?;
    let failed = states
        .iter()
        .any(|s| matches!(s, State::Failed | State::Skipped));
    if !failed && run.sel.everything {
        finish_full_run(store, dag, &states, &run.run_id)?;
    }
    let record = RunRecord {
        run_id: run.run_id.clone(),
        started_at,
        finished_at: runlog::now_rfc3339(),
        argv: opts.argv.clone(),
        pipeline: pipeline.path.display().to_string(),
        pipeline_digest: pipeline.digest.clone(),
        status: if failed {
            RunStatus::Failed
        } else {
            RunStatus::Ok
        },
        tasks,
    };
    crate::failpoint::hit(crate::failpoint::site::BEFORE_RECORD);
    runlog::write(&run.run_dir, &record)?;
    store.stat.save()?;
    if !failed {
        // Every staging dir was renamed into the store; failed ones stay for `scir gc`.
        let _ = std::fs::remove_dir_all(store.layout.tmp_dir().join(&run.run_id));
    }
    Ok(record)
}

fn is_user_error(e: &anyhow::Error) -> bool {
    crate::error::exit_code(e) == 2
}

/// `<task>.<first arm>.log`.
pub fn log_name(node: &Node) -> String {
    format!("{}.{}.log", node.task, node.arms[0])
}

/// Everything one run shares between its tasks.
struct Run<'a> {
    store: &'a Store,
    pipeline: &'a Pipeline,
    dag: &'a Dag,
    opts: &'a RunOptions,
    sel: Selection,
    run_id: String,
    run_dir: PathBuf,
    /// A task computed for another run (`scir task`): that run publishes it.
    remote: bool,
}

/// What [`Run::prepare`] found.
enum Prepared {
    /// Nothing to compute: how the node ended.
    Finished(Outcome),
    /// Its object must be computed (here or by a Slurm job).
    Compute(Compute),
}

/// A node to compute: its key material, key and input objects.
struct Compute {
    material: KeyMaterial,
    key: String,
    inputs: BTreeMap<String, Manifest>,
    forced: bool,
}

/// Whether the merged object of a shard task (its key material without the shard) exists.
fn merged_exists(store: &Store, shard: &KeyMaterial) -> bool {
    store.manifest(&shard.merged().key()).is_some()
}

/// How one node ended.
struct Outcome {
    state: State,
    status: TaskStatus,
    reason: String,
    key: String,
    /// Failed because of the user's input (a stage's user error).
    user_error: bool,
}

impl Outcome {
    fn failed(reason: String, key: String) -> Outcome {
        Outcome {
            state: State::Failed,
            status: TaskStatus::Failed,
            reason,
            key,
            user_error: false,
        }
    }
    fn failed_by(e: &anyhow::Error, key: String) -> Outcome {
        Outcome {
            user_error: is_user_error(e),
            ..Outcome::failed(format!("{e:#}"), key)
        }
    }
    fn not_needed(key: String) -> Outcome {
        Outcome {
            state: State::NotNeeded,
            status: TaskStatus::Hit,
            reason: "not needed: the merged object exists".to_string(),
            key,
            user_error: false,
        }
    }
    fn skipped(reason: String) -> Outcome {
        Outcome {
            state: State::Skipped,
            status: TaskStatus::Skipped,
            reason,
            key: String::new(),
            user_error: false,
        }
    }
}

impl Run<'_> {
    /// Node `i`'s inputs and key, and whether it needs computing (else how it ended: a
    /// hit, not needed, or skipped).
    fn prepare(
        &self,
        i: usize,
        states: &[State],
        memo: &mut BTreeMap<usize, Option<Manifest>>,
        stopped_by: Option<&str>,
    ) -> anyhow::Result<Prepared> {
        let (node, dag) = (&self.dag.nodes[i], self.dag);
        let mut inputs: BTreeMap<String, Manifest> = BTreeMap::new();
        for (slot, up) in &node.inputs {
            let m = match &states[*up] {
                State::Done(m) => (**m).clone(),
                State::Failed | State::Skipped | State::NotNeeded => {
                    let why = format!("upstream {} did not complete", dag.nodes[*up].task);
                    return Ok(Prepared::Finished(Outcome::skipped(why)));
                }
                State::Pending => probe(self.store, dag, *up, memo)
                    .ok_or_else(|| missing_upstream(self.pipeline, self.store, &dag.nodes[*up]))?,
            };
            inputs.insert(slot.clone(), m);
        }
        if let Some(first) = stopped_by {
            return Ok(Prepared::Finished(Outcome::skipped(format!(
                "not run: the run stopped after {first} failed (--keep-going runs independent \
                 tasks)"
            ))));
        }
        let refs: BTreeMap<String, &Manifest> =
            inputs.iter().map(|(s, m)| (s.clone(), m)).collect();
        let material = material(self.store, node, &refs)?;
        let key = material.key();
        let forced = self.opts.force && self.sel.named[i];
        if node.shard.is_some() && !forced && merged_exists(self.store, &material) {
            return Ok(Prepared::Finished(Outcome::not_needed(key)));
        }
        if let Some(m) = self.store.manifest(&key).filter(|_| !forced) {
            let done = self.finish(i, key, m, TaskStatus::Hit, "object exists".into())?;
            return Ok(Prepared::Finished(done));
        }
        Ok(Prepared::Compute(Compute {
            material,
            key,
            inputs,
            forced,
        }))
    }

    /// Compute node `i` in this process: its key's lock, a re-check, the stage, the commit.
    fn compute_here(&self, i: usize, c: Compute, states: &[State]) -> anyhow::Result<Outcome> {
        let node = &self.dag.nodes[i];
        let me = Holder::me(&self.run_id, format!("computing {}", node.task));
        let note = |msg: &str| eprintln!("{}: {msg}", node.task);
        let lock_path = self.store.layout.key_lock(&c.key);
        let _held = lock::acquire(&lock_path, &me, self.opts.wait, &note)?;
        if let Some(m) = self.store.manifest(&c.key).filter(|_| !c.forced) {
            let why = "computed by a concurrent run".to_string();
            return self.finish(i, c.key, m, TaskStatus::Hit, why);
        }
        let inputs: BTreeMap<String, &Manifest> =
            c.inputs.iter().map(|(s, m)| (s.clone(), m)).collect();
        match self.execute(node, &c.material, &c.key, inputs, states, c.forced) {
            Ok((m, status, reason)) => self.finish(i, c.key, m, status, reason),
            Err(e) => Ok(Outcome::failed_by(&e, c.key)),
        }
    }

    /// Node `i` done with object `manifest`: publish it (unless a shard).
    fn finish(
        &self,
        i: usize,
        key: String,
        manifest: Manifest,
        status: TaskStatus,
        reason: String,
    ) -> anyhow::Result<Outcome> {
        let node = &self.dag.nodes[i];
        if node.shard.is_none() && !self.remote {
            publish(self.store, &self.run_id, node, &key)?;
        }
        Ok(Outcome {
            state: State::Done(Box::new(manifest)),
            status,
            reason,
            key,
            user_error: false,
        })
    }

    /// Run a node's stage and commit; holds the key's lock.
    fn execute(
        &self,
        node: &Node,
        material: &KeyMaterial,
        key: &str,
        inputs: BTreeMap<String, &Manifest>,
        states: &[State],
        forced: bool,
    ) -> anyhow::Result<(Manifest, TaskStatus, String)> {
        let parts =
            node.parts
                .iter()
                .map(|p| match &states[*p] {
                    State::Done(m) => Ok((**m).clone()),
                    State::Pending => probe(self.store, self.dag, *p, &mut BTreeMap::new())
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "{}: shard {} has no object",
                                node.task,
                                self.dag.nodes[*p].task
                            )
                        }),
                    _ => Err(anyhow::anyhow!(
                        "{}: its shard {} has no object; run again",
                        node.task,
                        self.dag.nodes[*p].task
                    )),
                })
                .collect::<anyhow::Result<Vec<Manifest>>>()?;
        let reason = if forced {
            "forced".to_string()
        } else {
            why_run(self.store, node, material)
        };
        if self.opts.show_progress {
            eprintln!("running {} ({reason})", node.task);
        }
        let t = exec::TaskRun {
            store: self.store,
            run_id: &self.run_id,
            node,
            material,
            key,
            inputs,
            parts: parts.iter().collect(),
            pipeline_dir: &self.pipeline.dir,
            log: self.run_dir.join(log_name(node)),
            show_progress: self.opts.show_progress,
            replace: forced,
        };
        let spinner = task_spinner(self.opts.show_progress, &node.task);
        let result = exec::execute(&t);
        spinner.finish_and_clear();
        match result {
            Ok(m) => Ok((m, TaskStatus::Ran, reason)),
            Err(e) => {
                eprintln!("error: {e:#}");
                Err(e)
            }
        }
    }

    /// One record per arm that lists node `i` (later arms of a computed node: `hit`).
    fn records(&self, i: usize, o: &Outcome, seconds: f64) -> Vec<TaskRecord> {
        let node = &self.dag.nodes[i];
        let rows: BTreeMap<String, u64> = match &o.state {
            State::Done(m) => m.tables.iter().map(|(n, t)| (n.clone(), t.rows)).collect(),
            _ => BTreeMap::new(),
        };
        let log_path = self.run_dir.join(log_name(node));
        let ran = matches!(o.status, TaskStatus::Ran | TaskStatus::Failed) && log_path.exists();
        let log = if ran {
            log_path.display().to_string()
        } else {
            String::new()
        };
        let mut out = Vec::new();
        let shown = node
            .arms
            .iter()
            .filter(|a| self.opts.arm.as_ref().is_none_or(|x| x == *a));
        for (a, arm) in shown.enumerate() {
            let (status, reason) = if a > 0 && o.status == TaskStatus::Ran {
                (
                    TaskStatus::Hit,
                    format!("same task as arm {:?} (computed once)", node.arms[0]),
                )
            } else {
                (o.status, o.reason.clone())
            };
            out.push(TaskRecord {
                task: node.task.clone(),
                stage: node.stage.clone(),
                iteration: node.iteration,
                arm: arm.clone(),
                key: o.key.clone(),
                status,
                reason,
                seconds,
                rows: rows.clone(),
                log: log.clone(),
                user_error: o.user_error,
            });
        }
        out
    }
}

/// Why node `i` (whose inputs `probe` found in `memo`) has no object.
pub fn why_stale(
    store: &Store,
    dag: &Dag,
    i: usize,
    memo: &BTreeMap<usize, Option<Manifest>>,
) -> String {
    let node = &dag.nodes[i];
    match material_from_memo(store, node, memo) {
        Ok(m) => why_run(store, node, &m),
        Err(e) => format!("{e:#}"),
    }
}

/// [`material`] of `node` with its inputs' manifests as `probe` left them in `memo`
/// (inputs without an object are left out, so such a key never matches).
pub fn material_from_memo(
    store: &Store,
    node: &Node,
    memo: &BTreeMap<usize, Option<Manifest>>,
) -> anyhow::Result<KeyMaterial> {
    let ups: BTreeMap<String, Manifest> = node
        .inputs
        .iter()
        .filter_map(|(s, u)| memo.get(u).cloned().flatten().map(|m| (s.clone(), m)))
        .collect();
    let inputs: BTreeMap<String, &Manifest> = ups.iter().map(|(s, m)| (s.clone(), m)).collect();
    material(store, node, &inputs)
}

/// Why a node without an object must run: its key material compared with
/// that of the object refs point at (the last result of this task).
fn why_run(store: &Store, node: &Node, now: &KeyMaterial) -> String {
    let refs = store.read_refs().unwrap_or_default();
    let old = node
        .arms
        .iter()
        .find_map(|a| refs.get(a)?.get(&node.task))
        .and_then(|k| store.manifest(k));
    let Some(old) = old else {
        return "no object".to_string();
    };
    let diff = crate::engine::cache::diff(&old.material, now);
    if diff.is_empty() {
        return "no object (removed?)".to_string();
    }
    let shown: Vec<&str> = diff
        .iter()
        .take(REASON_FIELDS)
        .map(String::as_str)
        .collect();
    let more = diff.len().saturating_sub(REASON_FIELDS);
    let tail = if more > 0 {
        format!("; +{more} more")
    } else {
        String::new()
    };
    format!("changed: {}{tail}", shown.join("; "))
}

/// How many changed key fields a reason lists.
const REASON_FIELDS: usize = 3;

/// A spinner with the task's name and elapsed time (hidden unless on a terminal).
fn task_spinner(show: bool, task: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(task.to_string());
    bar.enable_steady_tick(SPINNER_TICK);
    bar
}

const SPINNER_TICK: std::time::Duration = std::time::Duration::from_millis(120);

fn missing_upstream(pipeline: &Pipeline, store: &Store, node: &Node) -> anyhow::Error {
    user_err!(
        "{} is needed but not built (no object for its current key)\nBuild it first: scir run {} \
         --artifacts {} --stage {} --iter {}\n(or drop --single to build upstream tasks \
         automatically)",
        node.task,
        pipeline.path.display(),
        store.root.display(),
        node.stage,
        node.iteration
    )
    .into()
}

/// With `--single`: every input of a planned task outside the plan must exist.
fn check_upstream(
    store: &Store,
    pipeline: &Pipeline,
    dag: &Dag,
    sel: &Selection,
) -> anyhow::Result<()> {
    let mut memo = BTreeMap::new();
    for (i, node) in dag.nodes.iter().enumerate() {
        if !sel.in_plan[i] {
            continue;
        }
        for up in node.inputs.values() {
            if !sel.in_plan[*up] && probe(store, dag, *up, &mut memo).is_none() {
                return Err(missing_upstream(pipeline, store, &dag.nodes[*up]));
            }
        }
    }
    Ok(())
}
