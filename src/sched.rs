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
use std::time::Instant;

use crate::cache::{KEY_SCHEME, KeyMaterial};
use crate::config::Pipeline;
use crate::dag::{Dag, Node};
use crate::lock::{self, Holder, Wait};
use crate::runlog::{self, RunRecord, TaskRecord, status};
use crate::store::maintain::RUN_LOCK;
use crate::store::{Manifest, Store, view};
use crate::{table, user_err};

mod exec;
mod select;

pub use select::{Selection, select};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub stage: Option<String>,
    pub iter: Option<u32>,
    pub single: bool,
    pub downstream: bool,
    pub force: bool,
    pub keep_going: bool,
    pub wait: Wait,
    pub show_progress: bool,
    pub argv: Vec<String>,
}

/// Per-node state during a run.
#[derive(Debug, Clone)]
enum State {
    Pending,
    Done(Box<Manifest>),
    Failed,
    Skipped,
}

/// The key material of `node` given its inputs' manifests.
pub fn material(node: &Node, inputs: &BTreeMap<String, &Manifest>) -> anyhow::Result<KeyMaterial> {
    let mut externals = BTreeMap::new();
    for (name, path) in &node.spec.externals {
        externals.insert(name.clone(), table::digest_file(path)?);
    }
    Ok(KeyMaterial {
        scheme: KEY_SCHEME,
        kind: node.spec.stage.kind().to_string(),
        version: node.spec.stage.version(),
        iteration: node.iteration,
        seed: node.seed,
        params: node.spec.params.clone(),
        inputs: inputs
            .iter()
            .map(|(s, m)| (s.clone(), m.output_digest.clone()))
            .collect(),
        externals,
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
    let found = material(node, &refs)
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
    let (run_id, run_dir) = runlog::create_run_dir(&store.runs_dir(), &started_at)?;
    let me = Holder {
        run_id: run_id.clone(),
        pid: std::process::id(),
        doing: "running".into(),
    };
    let _alive = lock::acquire(&run_dir.join(RUN_LOCK), &me, Wait::NoWait, &|_| {})?;
    let mut states = vec![State::Pending; dag.nodes.len()];
    let mut memo = BTreeMap::new();
    let mut tasks = Vec::new();
    let mut stopped_by: Option<String> = None;
    for (i, node) in dag.nodes.iter().enumerate() {
        if !sel.in_plan[i] {
            continue;
        }
        let started = Instant::now();
        let outcome = step(
            store,
            pipeline,
            dag,
            opts,
            &sel,
            &run_id,
            &run_dir,
            i,
            &states,
            &mut memo,
            &stopped_by,
        );
        let (state, st, reason, key) = match outcome {
            Ok(o) => o,
            Err(e) if is_user_error(&e) => return Err(e),
            Err(e) => {
                eprintln!("error: {e:#}");
                (
                    State::Failed,
                    status::FAILED,
                    format!("{e:#}"),
                    String::new(),
                )
            }
        };
        if matches!(state, State::Failed) && !opts.keep_going && stopped_by.is_none() {
            stopped_by = Some(node.task.clone());
        }
        let rows = match &state {
            State::Done(m) => m.tables.iter().map(|(n, t)| (n.clone(), t.rows)).collect(),
            _ => BTreeMap::new(),
        };
        let ran =
            matches!(st, status::RAN | status::FAILED) && run_dir.join(log_name(node)).exists();
        let log = if ran {
            run_dir.join(log_name(node)).display().to_string()
        } else {
            String::new()
        };
        for (a, arm) in node.arms.iter().enumerate() {
            let (st, reason) = if a > 0 && st == status::RAN {
                (
                    status::HIT,
                    format!("same task as arm {:?} (computed once)", node.arms[0]),
                )
            } else {
                (st, reason.clone())
            };
            tasks.push(TaskRecord {
                task: node.task.clone(),
                stage: node.stage.clone(),
                iteration: node.iteration,
                arm: arm.clone(),
                key: key.clone(),
                status: st.to_string(),
                reason,
                seconds: started.elapsed().as_secs_f64(),
                rows: rows.clone(),
                log: log.clone(),
            });
        }
        states[i] = state;
    }
    let failed = states
        .iter()
        .any(|s| matches!(s, State::Failed | State::Skipped));
    if !failed && sel.everything {
        finish_full_run(store, dag, &states, &run_id)?;
    }
    let record = RunRecord {
        run_id: run_id.clone(),
        started_at,
        finished_at: runlog::now_rfc3339(),
        argv: opts.argv.clone(),
        pipeline: pipeline.path.display().to_string(),
        pipeline_digest: pipeline.digest.clone(),
        status: if failed { "failed" } else { "ok" }.to_string(),
        tasks,
    };
    runlog::write(&run_dir, &record)?;
    if !failed {
        // Every staging dir was renamed into the store; failed ones stay for `scir gc`.
        let _ = std::fs::remove_dir_all(store.tmp_dir().join(&run_id));
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

type StepOutcome = (State, &'static str, String, String);

#[allow(clippy::too_many_arguments)]
fn step(
    store: &Store,
    pipeline: &Pipeline,
    dag: &Dag,
    opts: &RunOptions,
    sel: &Selection,
    run_id: &str,
    run_dir: &std::path::Path,
    i: usize,
    states: &[State],
    memo: &mut BTreeMap<usize, Option<Manifest>>,
    stopped_by: &Option<String>,
) -> anyhow::Result<StepOutcome> {
    let node = &dag.nodes[i];
    let mut inputs: BTreeMap<String, Manifest> = BTreeMap::new();
    for (slot, up) in &node.inputs {
        let m = match &states[*up] {
            State::Done(m) => (**m).clone(),
            State::Failed | State::Skipped => {
                let why = format!("upstream {} did not complete", dag.nodes[*up].task);
                return Ok((State::Skipped, status::SKIPPED, why, String::new()));
            }
            State::Pending => probe(store, dag, *up, memo)
                .ok_or_else(|| missing_upstream(pipeline, store, &dag.nodes[*up]))?,
        };
        inputs.insert(slot.clone(), m);
    }
    if let Some(first) = stopped_by {
        let why = format!(
            "not run: the run stopped after {first} failed (--keep-going runs independent tasks)"
        );
        return Ok((State::Skipped, status::SKIPPED, why, String::new()));
    }
    let input_refs: BTreeMap<String, &Manifest> =
        inputs.iter().map(|(s, m)| (s.clone(), m)).collect();
    let material = material(node, &input_refs)?;
    let key = material.key();
    let forced = opts.force && sel.named[i];
    let (manifest, st, reason) = match store.manifest(&key).filter(|_| !forced) {
        Some(m) => (m, status::HIT, "object exists".to_string()),
        None => {
            let me = Holder {
                run_id: run_id.into(),
                pid: std::process::id(),
                doing: format!("computing {}", node.task),
            };
            let note = |msg: &str| eprintln!("{}: {msg}", node.task);
            let _held = lock::acquire(&store.key_lock(&key), &me, opts.wait, &note)?;
            match store.manifest(&key).filter(|_| !forced) {
                Some(m) => (m, status::HIT, "computed by a concurrent run".to_string()),
                None => {
                    let reason = if forced {
                        "forced".to_string()
                    } else {
                        why_run(store, node)
                    };
                    if opts.show_progress {
                        eprintln!("running {} ({reason})", node.task);
                    }
                    let t = exec::TaskRun {
                        store,
                        run_id,
                        node,
                        material: &material,
                        key: &key,
                        inputs: input_refs,
                        pipeline_dir: &pipeline.dir,
                        log: run_dir.join(log_name(node)),
                        show_progress: opts.show_progress,
                        replace: forced,
                    };
                    match exec::execute(&t) {
                        Ok(m) => (m, status::RAN, reason),
                        Err(e) => {
                            eprintln!("error: {e:#}");
                            return Ok((State::Failed, status::FAILED, format!("{e:#}"), key));
                        }
                    }
                }
            }
        }
    };
    publish(store, run_id, node, &key)?;
    Ok((State::Done(Box::new(manifest)), st, reason, key))
}

/// Why a node without an object must run: compared with what refs point at.
fn why_run(store: &Store, node: &Node) -> String {
    let arm = &node.arms[0];
    let refs = store.read_refs().unwrap_or_default();
    match refs
        .get(arm)
        .and_then(|t| t.get(&node.task))
        .and_then(|k| store.manifest(k))
    {
        None => "no object".to_string(),
        Some(_) => "no object for the current key (see `scir status --explain`)".to_string(),
    }
}

/// Point refs of every arm of `node` at `key` and republish, under the global lock.
fn publish(store: &Store, run_id: &str, node: &Node, key: &str) -> anyhow::Result<()> {
    let me = Holder {
        run_id: run_id.into(),
        pid: std::process::id(),
        doing: format!("publishing {}", node.task),
    };
    let _g = lock::acquire(&store.global_lock(), &me, Wait::Block, &|_| {})?;
    if store.manifest(key).is_none() {
        anyhow::bail!(
            "object {key} of {} vanished (did `scir gc` run concurrently?); run again",
            node.task
        );
    }
    let mut refs = store.read_refs()?;
    for arm in &node.arms {
        refs.entry(arm.clone())
            .or_default()
            .insert(node.task.clone(), key.to_string());
    }
    store.write_refs(&refs)?;
    crate::store::failpoint("after-refs");
    view::sync(store, &refs, false)
}

/// After a complete run: refs hold exactly this plan's tasks; prune the view.
fn finish_full_run(store: &Store, dag: &Dag, states: &[State], run_id: &str) -> anyhow::Result<()> {
    let me = Holder {
        run_id: run_id.into(),
        pid: std::process::id(),
        doing: "publishing".into(),
    };
    let _g = lock::acquire(&store.global_lock(), &me, Wait::Block, &|_| {})?;
    let mut refs = crate::store::Refs::new();
    for (node, state) in dag.nodes.iter().zip(states) {
        if let State::Done(m) = state {
            for arm in &node.arms {
                refs.entry(arm.clone())
                    .or_default()
                    .insert(node.task.clone(), m.key.clone());
            }
        }
    }
    store.write_refs(&refs)?;
    view::sync(store, &refs, true)
}

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
