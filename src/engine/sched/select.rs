//! Which tasks a `scir run` brings up to date.

use crate::engine::dag::Dag;
use crate::user_err;

use super::RunOptions;

/// Per node: is it named by `--stage/--iter` (what `--force` forces), is it
/// a target (named, or downstream of one with `--downstream`), is it planned.
#[derive(Debug, Clone)]
pub struct Selection {
    pub named: Vec<bool>,
    pub target: Vec<bool>,
    pub in_plan: Vec<bool>,
    /// Whether the whole pipeline is selected (refs and the view are pruned).
    pub everything: bool,
}

/// Resolve `--stage`, `--iter`, `--single` and `--downstream` against `dag`.
pub fn select(dag: &Dag, opts: &RunOptions) -> anyhow::Result<Selection> {
    let n = dag.nodes.len();
    if let Some(stage) = &opts.stage
        && !dag.nodes.iter().any(|node| &node.stage == stage)
    {
        let mut stages: Vec<&str> = dag.nodes.iter().map(|n| n.stage.as_str()).collect();
        stages.dedup();
        stages.sort();
        stages.dedup();
        return Err(user_err!(
            "--stage {stage}: no such stage\nStages: {}.",
            stages.join(", ")
        )
        .into());
    }
    if let Some(arm) = &opts.arm
        && !dag.arms.contains(arm)
    {
        return Err(user_err!(
            "--arm {arm}: the pipeline has no such arm\nArms: {}.",
            dag.arms.join(", ")
        )
        .into());
    }
    let in_arm =
        |node: &crate::engine::dag::Node| opts.arm.as_ref().is_none_or(|a| node.arms.contains(a));
    let mut target: Vec<bool> = dag
        .nodes
        .iter()
        .map(|node| {
            in_arm(node)
                && opts.stage.as_ref().is_none_or(|s| &node.stage == s)
                && opts.iter.is_none_or(|k| node.iteration == k)
        })
        .collect();
    if !target.iter().any(|t| *t) {
        let what = opts.stage.as_deref().unwrap_or("any stage");
        let k = opts.iter.unwrap_or_default();
        return Err(user_err!(
            "--iter {k}: {what} has no task at iteration {k}\nStages that run each iteration have \
             tasks 1..=iterations; the others only at 0 (`scir dag` lists every task)."
        )
        .into());
    }
    let named = target.clone();
    if opts.downstream {
        for i in 0..n {
            if dag.nodes[i].inputs.values().any(|up| target[*up]) {
                target[i] = true;
            }
        }
    }
    let mut in_plan = target.clone();
    if !opts.single {
        for i in (0..n).rev() {
            if in_plan[i] {
                let node = &dag.nodes[i];
                for up in node.inputs.values().chain(&node.parts) {
                    in_plan[*up] = true;
                }
            }
        }
    }
    let everything = opts.stage.is_none() && opts.iter.is_none() && opts.arm.is_none();
    Ok(Selection {
        named,
        target,
        in_plan,
        everything,
    })
}
