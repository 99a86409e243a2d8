//! Stages × iterations × arms unrolled into a DAG of tasks.
//!
//! A *task* is `stage@k`: stages with `each_iteration: true` have tasks
//! `k = 1..=iterations`, the others one task at `k = 0`. Each arm unrolls the
//! whole pipeline with its own params; references (`generate@k` ← `model@k-1`
//! = `train@k-1`) are resolved per task, and cycles are reported with their
//! path. Tasks of different arms with the same static *identity* (kind,
//! version, iteration, seed, resolved params, identities of their inputs) are
//! one [`Node`], computed once and listed under every arm that has it. A task of a
//! sharded stage (`shards: N`) comes right after its N shard nodes (`generate@1#2of4`,
//! [`crate::engine::shard`]), which it lists in `parts`.
//!
//! Invariant: `Dag::nodes` is in topological order (inputs before users),
//! deterministic (iteration, then stage name, depth first), and every node's
//! `arms` is non-empty and in arm order.

use std::collections::BTreeMap;

use crate::engine::cache;
use crate::engine::config::{ArmPlan, At, Binding, Pipeline, Reference, ResolvedStage};
use crate::engine::shard::Shard;
use crate::engine::stage::SlotKind;
use crate::user_err;

/// One unit of work: a task of one or more arms.
#[derive(Debug, Clone)]
pub struct Node {
    /// `stage@k`.
    pub task: String,
    pub stage: String,
    pub iteration: u32,
    pub seed: u64,
    pub spec: ResolvedStage,
    /// Input slot → index of the upstream node.
    pub inputs: BTreeMap<String, usize>,
    /// Arms that list this task (in arm order).
    pub arms: Vec<String>,
    /// Static identity (see the module docs).
    pub identity: String,
    /// The shard this node computes (a shard task of a sharded stage), else `None`.
    pub shard: Option<Shard>,
    /// A sharded task's shard nodes, in shard order: it merges their objects (empty for
    /// every other node). Not inputs: its key is the unsharded task's.
    pub parts: Vec<usize>,
}

/// The unrolled pipeline.
#[derive(Debug)]
pub struct Dag {
    pub nodes: Vec<Node>,
    pub arms: Vec<String>,
    /// (arm, task) → node index.
    pub by_arm: BTreeMap<(String, String), usize>,
}

/// `stage@k`.
pub fn task_name(stage: &str, iteration: u32) -> String {
    format!("{stage}@{iteration}")
}

type TaskId = (String, u32);

/// Unroll and deduplicate every arm of `pipeline`.
pub fn build(pipeline: &Pipeline) -> anyhow::Result<Dag> {
    let mut dag = Dag {
        nodes: Vec::new(),
        arms: Vec::new(),
        by_arm: BTreeMap::new(),
    };
    let mut by_identity: BTreeMap<String, usize> = BTreeMap::new();
    for arm in &pipeline.arms {
        dag.arms.push(arm.name.clone());
        let (order, edges) = unroll(pipeline, arm)?;
        let mut index_of: BTreeMap<TaskId, usize> = BTreeMap::new();
        for id in order {
            let spec = &arm.stages[&id.0];
            let inputs: BTreeMap<String, usize> = edges[&id]
                .iter()
                .map(|(slot, up)| (slot.clone(), index_of[up]))
                .collect();
            let seed = cache::derive_seed(pipeline.seed, &id.0, id.1);
            let input_ids: BTreeMap<String, String> = inputs
                .iter()
                .map(|(s, i)| (s.clone(), dag.nodes[*i].identity.clone()))
                .collect();
            let kind = format!("{}/v{}", spec.stage.kind(), spec.stage.version());
            let identity = cache::identity(&kind, id.1, seed, &spec.params.json, &input_ids);
            let index = *by_identity.entry(identity.clone()).or_insert_with(|| {
                let node = Node {
                    task: task_name(&id.0, id.1),
                    stage: id.0.clone(),
                    iteration: id.1,
                    seed,
                    spec: spec.clone(),
                    inputs,
                    arms: Vec::new(),
                    identity,
                    shard: None,
                    parts: Vec::new(),
                };
                push_sharded(&mut dag.nodes, node)
            });
            let parts = dag.nodes[index].parts.clone();
            for i in std::iter::once(index).chain(parts) {
                dag.nodes[i].arms.push(arm.name.clone());
                let task = dag.nodes[i].task.clone();
                dag.by_arm.insert((arm.name.clone(), task), i);
            }
            index_of.insert(id, index);
        }
    }
    Ok(dag)
}

/// Push `node` (after its shard nodes when its stage is sharded); its index.
fn push_sharded(nodes: &mut Vec<Node>, mut node: Node) -> usize {
    if node.spec.shards > 1 {
        for shard in Shard::all(node.spec.shards) {
            nodes.push(Node {
                task: shard.task_name(&node.task),
                identity: format!("{}{}", node.identity, shard.task_name("")),
                shard: Some(shard),
                parts: Vec::new(),
                ..node.clone()
            });
            node.parts.push(nodes.len() - 1);
        }
    }
    nodes.push(node);
    nodes.len() - 1
}

type Edges = BTreeMap<TaskId, Vec<(String, TaskId)>>;

/// All tasks of one arm in topological order, with their resolved inputs.
fn unroll(pipeline: &Pipeline, arm: &ArmPlan) -> anyhow::Result<(Vec<TaskId>, Edges)> {
    let mut edges = Edges::new();
    for (name, spec) in &arm.stages {
        for k in iterations_of(pipeline, spec) {
            let mut ins = Vec::new();
            for (slot, binding) in &spec.bindings {
                if before_first(arm, spec, k, slot, binding) {
                    continue;
                }
                let up = resolve(pipeline, arm, spec, k, slot, binding)?;
                check_slot(pipeline, spec, slot, binding, &arm.stages[&up.0])?;
                ins.push((slot.clone(), up));
            }
            edges.insert((name.clone(), k), ins);
        }
    }
    let mut roots: Vec<&TaskId> = edges.keys().collect();
    roots.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let mut state: BTreeMap<TaskId, bool> = BTreeMap::new(); // false = on stack, true = done
    let mut order = Vec::new();
    for root in roots {
        let mut path = Vec::new();
        visit(
            pipeline, arm, root, &edges, &mut state, &mut order, &mut path,
        )?;
    }
    Ok((order, edges))
}

fn visit(
    pipeline: &Pipeline,
    arm: &ArmPlan,
    id: &TaskId,
    edges: &Edges,
    state: &mut BTreeMap<TaskId, bool>,
    order: &mut Vec<TaskId>,
    path: &mut Vec<TaskId>,
) -> anyhow::Result<()> {
    match state.get(id) {
        Some(true) => return Ok(()),
        Some(false) => {
            let start = path.iter().position(|p| p == id).unwrap_or(0);
            let cycle: Vec<String> = path[start..]
                .iter()
                .chain([id])
                .map(|(s, k)| task_name(s, *k))
                .collect();
            let loc = arm.stages[&id.0].loc;
            return Err(user_err!(
                "{}: the stages form a cycle: {}\nA stage cannot depend on itself in the same \
                 iteration; use STAGE@k-1 or model@k-1 to refer to the previous iteration.",
                pipeline.at(loc),
                cycle.join(" → ")
            )
            .into());
        }
        None => {}
    }
    state.insert(id.clone(), false);
    path.push(id.clone());
    for (_, up) in &edges[id] {
        visit(pipeline, arm, up, edges, state, order, path)?;
    }
    path.pop();
    state.insert(id.clone(), true);
    order.push(id.clone());
    Ok(())
}

/// The iterations a stage has tasks at.
pub fn iterations_of(pipeline: &Pipeline, spec: &ResolvedStage) -> Vec<u32> {
    if spec.each_iteration {
        (1..=pipeline.iterations).collect()
    } else {
        vec![0]
    }
}

/// Whether `slot` is one of the stage's optional inputs and its binding
/// (`STAGE@k-N`, both stages each_iteration) names an iteration before the
/// first: then the slot is left unbound at `spec@k`.
fn before_first(
    arm: &ArmPlan,
    spec: &ResolvedStage,
    k: u32,
    slot: &str,
    binding: &Binding,
) -> bool {
    let optional = spec
        .stage
        .inputs()
        .iter()
        .any(|s| s.name == slot && s.optional);
    if !optional || !spec.each_iteration {
        return false;
    }
    match &binding.reference {
        Reference::Stage {
            stage,
            at: At::Rel(d),
        } => arm
            .stages
            .get(stage)
            .is_some_and(|t| t.each_iteration && i64::from(k) + d < 1),
        _ => false,
    }
}

/// The task a binding of `spec@k` points at.
fn resolve(
    pipeline: &Pipeline,
    arm: &ArmPlan,
    spec: &ResolvedStage,
    k: u32,
    slot: &str,
    binding: &Binding,
) -> anyhow::Result<TaskId> {
    let fail = |msg: String| -> anyhow::Error {
        let default = if binding.default {
            " (its kind's default)"
        } else {
            ""
        };
        user_err!(
            "{}: stage {:?}, input {slot}: {}{default} at iteration {k}: {msg}",
            pipeline.at(binding.loc),
            spec.name,
            binding.text
        )
        .into()
    };
    let here = if spec.each_iteration {
        Some(i64::from(k))
    } else {
        None
    };
    let (stage, at) = match &binding.reference {
        Reference::Stage { stage, at } => (stage, *at),
        Reference::Model { at } => {
            return resolve_model(pipeline, arm, *at, here).map_err(fail);
        }
    };
    let want = stage_iteration(arm, spec, stage, at, here).map_err(fail)?;
    let stage = stage.clone();
    let target = &arm.stages[&stage];
    let valid = iterations_of(pipeline, target);
    match u32::try_from(want).ok().filter(|j| valid.contains(j)) {
        Some(j) => Ok((stage, j)),
        None => Err(fail(format!(
            "that is {stage}@{want}, which does not exist ({stage} has tasks at {})\nRefer to an \
             existing iteration, or to model@k-1 for the model chain.",
            describe_iterations(&valid)
        ))),
    }
}

/// The iteration `stage@at` names, seen from a task at iteration `here`
/// (`None` for a stage that runs once).
fn stage_iteration(
    arm: &ArmPlan,
    spec: &ResolvedStage,
    stage: &str,
    at: At,
    here: Option<i64>,
) -> Result<i64, String> {
    let Some(target) = arm.stages.get(stage) else {
        let known: Vec<&str> = arm.stages.keys().map(String::as_str).collect();
        return Err(format!(
            "there is no stage {stage:?}\nName one of: {}.",
            known.join(", ")
        ));
    };
    let d = match (at, target.each_iteration) {
        (At::Same, false) => return Ok(0),
        (At::Abs(j), _) => return Ok(j),
        (At::Initial | At::IrmRef | At::Judge | At::RewardModel, _) => {
            return Err(
                "@initial, @irm_ref, @judge and @reward_model are for the model chain".into(),
            );
        }
        (At::Same, true) => 0,
        (At::Rel(d), _) => d,
    };
    match here.filter(|_| target.each_iteration) {
        Some(h) => Ok(h + d),
        None => Err(format!(
            "{stage:?} and {:?} do not both run each iteration, so `k` means nothing here\nWrite \
             {stage}@N for a fixed iteration N.",
            spec.name
        )),
    }
}

fn describe_iterations(valid: &[u32]) -> String {
    match (valid.first(), valid.last()) {
        (Some(a), Some(b)) if a != b => format!("iterations {a}..={b}"),
        (Some(a), _) => format!("iteration {a}"),
        _ => "no iterations".into(),
    }
}

fn resolve_model(
    pipeline: &Pipeline,
    arm: &ArmPlan,
    at: At,
    here: Option<i64>,
) -> Result<TaskId, String> {
    let Some(models) = &pipeline.models else {
        return Err(
            "the pipeline has no `models:` section\nDeclare `models: { start: STAGE, \
                    step: STAGE }` or refer to a stage by name."
                .into(),
        );
    };
    let at = match (at, arm.irm_reference.offset()) {
        (At::IrmRef, None) => At::Initial,
        (At::IrmRef, Some(d)) => At::Rel(d),
        (At::Judge, _) => arm.judge.at(),
        (at, _) => at,
    };
    if at == At::RewardModel {
        return match &models.reward_model {
            Some(rm) => Ok((rm.clone(), 0)),
            None => Err(
                "`models.reward_model` is not declared\nAdd `reward_model: STAGE` \
                         under `models:` (a run-once stage that writes a reward model, e.g. \
                         kind train-rm)."
                    .into(),
            ),
        };
    }
    let j = match (at, here) {
        (At::Initial | At::IrmRef | At::Judge | At::RewardModel, _) => -1,
        (At::Abs(j), _) => j,
        (At::Rel(d), Some(h)) => h + d,
        (At::Rel(_), None) | (At::Same, _) => {
            return Err(
                "`model@k…` needs an each_iteration stage; use model@0 or model@initial \
                        in a stage that runs once"
                    .into(),
            );
        }
    };
    if j > i64::from(pipeline.iterations) {
        return Err(format!(
            "model@{j} is past the last iteration ({})",
            pipeline.iterations
        ));
    }
    match j {
        j if j >= 1 => Ok((models.step.clone(), j as u32)),
        0 => Ok((models.start.clone(), 0)),
        _ => match &models.initial {
            Some(init) => Ok((init.clone(), 0)),
            None => Err(format!(
                "that is model@{j} (before models.start), and `models.initial` is not declared\n\
                 Add `initial: STAGE` under `models:` or refer to a later model."
            )),
        },
    }
}

fn check_slot(
    pipeline: &Pipeline,
    spec: &ResolvedStage,
    slot: &str,
    binding: &Binding,
    target: &ResolvedStage,
) -> anyhow::Result<()> {
    let kind = spec
        .stage
        .inputs()
        .iter()
        .find(|s| s.name == slot)
        .map(|s| s.kind);
    let ok = match kind {
        Some(SlotKind::Checkpoint) => target.outputs.checkpoint,
        Some(SlotKind::Tables) => !target.outputs.tables.is_empty(),
        None => false,
    };
    if ok {
        return Ok(());
    }
    let want = match kind {
        Some(SlotKind::Checkpoint) => "a checkpoint (a model)",
        _ => "tables",
    };
    Err(user_err!(
        "{}: stage {:?}, input {slot:?} needs {want}, but {:?} (kind {}) does not produce any\n\
         Bind it to a stage that does.",
        pipeline.at(binding.loc),
        spec.name,
        target.name,
        target.stage.kind()
    )
    .into())
}
