//! `scir dag`: the unrolled DAG of tasks.

use super::StoreArgs;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::PipelineArg;
use crate::engine::dag::Dag;
use crate::engine::stage::Registry;

/// Show the unrolled DAG: one node per task (stage@iteration), edges from
/// each input to its user, labelled with the input slot. Tasks shared by
/// several arms are one node listing all of them.
///
///   scir dag --format dot | dot -Tsvg > dag.svg
#[derive(Debug, Args)]
pub struct DagArgs {
    #[command(flatten)]
    pub pipeline: PipelineArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Ascii)]
    pub format: Format,
    /// Accepted like every pipeline command's (the DAG itself needs no artifacts).
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `scir dag --format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Ascii,
    Dot,
    Mermaid,
}

/// Run `scir dag`.
pub fn run(args: &DagArgs, registry: &Registry) -> anyhow::Result<ExitCode> {
    let (_, dag) = super::load(&args.pipeline, registry)?;
    let text = match args.format {
        Format::Ascii => ascii(&dag),
        Format::Dot => dot(&dag),
        Format::Mermaid => mermaid(&dag),
    };
    outln!("{}", text.trim_end());
    Ok(ExitCode::SUCCESS)
}

fn label(dag: &Dag, i: usize) -> String {
    let n = &dag.nodes[i];
    if dag.arms.len() > 1 {
        format!("{} [{}]", n.task, n.arms.join(","))
    } else {
        n.task.clone()
    }
}

/// One line per task in topological order, with its inputs.
pub fn ascii(dag: &Dag) -> String {
    let mut out = String::new();
    for (i, n) in dag.nodes.iter().enumerate() {
        out.push_str(&format!(
            "{}  ({}: {})\n",
            label(dag, i),
            n.spec.stage.kind(),
            n.spec.stage.about()
        ));
        for (slot, up) in edges(n) {
            out.push_str(&format!("    {slot} ← {}\n", label(dag, up)));
        }
    }
    out
}

/// Graphviz.
pub fn dot(dag: &Dag) -> String {
    let mut out = graph(
        dag,
        "digraph scir {\n  rankdir=LR;\n  node [shape=box];\n",
        |i, label| format!("  n{i} [label={label:?}];\n"),
        |up, i, slot| format!("  n{up} -> n{i} [label={slot:?}];\n"),
    );
    out.push_str("}\n");
    out
}

/// Mermaid flowchart.
pub fn mermaid(dag: &Dag) -> String {
    graph(
        dag,
        "flowchart LR\n",
        |i, label| format!("  n{i}[\"{label}\"]\n"),
        |up, i, slot| format!("  n{up} -->|{slot}| n{i}\n"),
    )
}

/// `head`, then every node as `node(index, label)`, then every input edge as
/// `edge(upstream, downstream, slot)`.
fn graph(
    dag: &Dag,
    head: &str,
    node: impl Fn(usize, &str) -> String,
    edge: impl Fn(usize, usize, &str) -> String,
) -> String {
    let mut out = String::from(head);
    for i in 0..dag.nodes.len() {
        out.push_str(&node(i, &label(dag, i)));
    }
    for (i, n) in dag.nodes.iter().enumerate() {
        for (slot, up) in edges(n) {
            out.push_str(&edge(up, i, slot));
        }
    }
    out
}

/// A node's incoming edges: its inputs by slot, then a sharded task's shards (`shard`).
fn edges(n: &crate::engine::dag::Node) -> Vec<(&str, usize)> {
    let inputs = n.inputs.iter().map(|(s, u)| (s.as_str(), *u));
    inputs
        .chain(n.parts.iter().map(|u| ("shard", *u)))
        .collect()
}
