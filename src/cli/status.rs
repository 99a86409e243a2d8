//! `scir status`: which tasks are fresh or stale, and why.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;

use super::{PipelineArg, StoreArgs};
use crate::engine::cache::short_key;
use crate::engine::cache::{self, KeyMaterial};
use crate::engine::dag::Dag;
use crate::engine::sched;
use crate::engine::stage::Registry;
use crate::engine::store::{Manifest, Store};
use crate::user_err;

/// Show which tasks are fresh (their object exists) or stale, and why.
///
/// A stale task's reason compares the key material it would have now with
/// the one of the object refs point at (what the last run produced).
/// `--explain TASK` prints that comparison field by field, e.g.
///
///   scir status --explain train@1
///     params.lr: 0.0001 → 0.0003
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub pipeline: PipelineArg,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Explain one task (`stage@k`) field by field.
    #[arg(long, value_name = "TASK")]
    pub explain: Option<String>,
    /// The arm of the task to explain (default: the first arm that has it).
    #[arg(long, value_name = "ARM")]
    pub arm: Option<String>,
}

/// One task's status.
struct Line {
    fresh: bool,
    reason: String,
    diff: Vec<String>,
}

/// Run `scir status`.
pub fn run(args: &StatusArgs, registry: &Registry) -> anyhow::Result<ExitCode> {
    let (_, dag) = super::load(&args.pipeline, registry)?;
    let store = Store::new(&args.store.artifacts);
    let refs = store.read_refs()?;
    let mut memo = BTreeMap::new();
    let mut lines = Vec::new();
    for i in 0..dag.nodes.len() {
        let node = &dag.nodes[i];
        let old = node
            .arms
            .iter()
            .find_map(|a| refs.get(a)?.get(&node.task))
            .and_then(|k| store.manifest(k));
        lines.push(status_of(&store, &dag, i, &mut memo, old.as_ref()));
    }
    if let Some(task) = &args.explain {
        return explain(&dag, &lines, task, args.arm.as_deref());
    }
    let stale = lines.iter().filter(|l| !l.fresh).count();
    for (node, line) in dag.nodes.iter().zip(&lines) {
        let word = if line.fresh { "fresh" } else { "stale" };
        outln!(
            "{word:<5} {:<24} [{}] {}",
            node.task,
            node.arms.join(","),
            line.reason
        );
    }
    outln!("{} tasks, {stale} stale", lines.len());
    Ok(ExitCode::SUCCESS)
}

fn status_of(
    store: &Store,
    dag: &Dag,
    i: usize,
    memo: &mut BTreeMap<usize, Option<Manifest>>,
    old: Option<&Manifest>,
) -> Line {
    let node = &dag.nodes[i];
    if let Some(m) = sched::probe(store, dag, i, memo) {
        return Line {
            fresh: true,
            reason: short_key(&m.key).to_string(),
            diff: Vec::new(),
        };
    }
    if let Some(merged) = merged_object(store, node, memo) {
        return Line {
            fresh: true,
            reason: format!("not needed: merged object {} exists", short_key(&merged)),
            diff: Vec::new(),
        };
    }
    if let Some(up) = node
        .inputs
        .values()
        .find(|u| memo.get(u).is_some_and(Option::is_none))
    {
        let reason = format!("upstream {} is stale", dag.nodes[*up].task);
        return Line {
            fresh: false,
            reason,
            diff: Vec::new(),
        };
    }
    let now: Option<KeyMaterial> = sched::material_from_memo(store, node, memo).ok();
    match (old, now) {
        (None, _) => Line {
            fresh: false,
            reason: "never built".into(),
            diff: Vec::new(),
        },
        (Some(old), Some(now)) => {
            let diff = cache::diff(&old.material, &now);
            let reason = match diff.first() {
                Some(first) if diff.len() == 1 => format!("changed: {first}"),
                Some(first) => format!("changed: {first} (+{} more; --explain)", diff.len() - 1),
                None => "object missing (removed by gc?)".into(),
            };
            Line {
                fresh: false,
                reason,
                diff,
            }
        }
        (Some(_), None) => Line {
            fresh: false,
            reason: "an input file is unreadable".into(),
            diff: Vec::new(),
        },
    }
}

/// For a shard task: the key of its merged object, when that exists.
fn merged_object(
    store: &Store,
    node: &crate::engine::dag::Node,
    memo: &BTreeMap<usize, Option<Manifest>>,
) -> Option<String> {
    node.shard?;
    let key = sched::material_from_memo(store, node, memo)
        .ok()?
        .merged()
        .key();
    store.manifest(&key).map(|_| key)
}

fn explain(dag: &Dag, lines: &[Line], task: &str, arm: Option<&str>) -> anyhow::Result<ExitCode> {
    let found = dag
        .nodes
        .iter()
        .zip(lines)
        .find(|(n, _)| n.task == task && arm.is_none_or(|a| n.arms.iter().any(|x| x == a)));
    let Some((node, line)) = found else {
        let tasks: Vec<&str> = dag.nodes.iter().map(|n| n.task.as_str()).collect();
        return Err(user_err!(
            "no task {task:?}{}\nTasks: {}.",
            arm.map(|a| format!(" in arm {a:?}")).unwrap_or_default(),
            tasks.join(", ")
        )
        .into());
    };
    outln!(
        "{} [{}] (kind {} v{})",
        node.task,
        node.arms.join(","),
        node.spec.stage.kind(),
        node.spec.stage.version()
    );
    outln!(
        "  {}: {}",
        if line.fresh { "fresh" } else { "stale" },
        line.reason
    );
    for d in &line.diff {
        outln!("    {d}");
    }
    for (slot, up) in &node.inputs {
        outln!("  input {slot} ← {}", dag.nodes[*up].task);
    }
    Ok(ExitCode::SUCCESS)
}
