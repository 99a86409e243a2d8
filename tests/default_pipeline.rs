//! The default pipeline: gold isolation (no training task has the held-out
//! sets upstream) and its toy twin `tests/smoke/default.yaml` (same DAG; run
//! end to end with the real binary; the report's structure and ranges).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use crate::util::scir;
use scir::engine::dag::Dag;
use scir::engine::runlog::{RunRecord, RunStatus, TaskStatus};

const DEFAULT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.yaml");
const SMOKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smoke/default.yaml");
const ABLATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ablations.yaml");
const METHODS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/methods.yaml");

/// Stage kinds that train or feed training.
const TRAINING_KINDS: &[&str] = &[
    "world",
    "init",
    "sft",
    "generate",
    "score-irm",
    "score-grm",
    "consistency-filter",
    "train",
    "train-rm",
];
/// Stage kinds that hold or use gold labels.
const GOLD_KINDS: &[&str] = &["heldout", "eval", "eval-labels"];

fn dag(path: &str) -> Dag {
    let reg = scir::stages::registry();
    let pipeline = scir::engine::config::load(Path::new(path), &reg).unwrap();
    scir::engine::dag::build(&pipeline).unwrap()
}

fn kind(dag: &Dag, i: usize) -> &'static str {
    dag.nodes[i].spec.stage.kind()
}

/// Every node upstream of `i` (transitively).
fn upstream(dag: &Dag, i: usize) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<usize> = dag.nodes[i].inputs.values().copied().collect();
    while let Some(j) = todo.pop() {
        if seen.insert(j) {
            todo.extend(dag.nodes[j].inputs.values().copied());
        }
    }
    seen
}

#[test]
fn no_training_task_has_the_held_out_sets_upstream() {
    for path in [DEFAULT, SMOKE, ABLATIONS, METHODS] {
        let dag = dag(path);
        let mut training = 0;
        for i in 0..dag.nodes.len() {
            if !TRAINING_KINDS.contains(&kind(&dag, i)) {
                continue;
            }
            training += 1;
            for j in upstream(&dag, i) {
                assert!(
                    !GOLD_KINDS.contains(&kind(&dag, j)),
                    "{path}: {} has {} upstream",
                    dag.nodes[i].task,
                    dag.nodes[j].task
                );
            }
        }
        assert!(training > 10, "{path}: only {training} training tasks");
        // The held-out tables come from `heldout` only, and eval reads them.
        for node in &dag.nodes {
            let tables: Vec<&str> = node
                .spec
                .outputs
                .tables
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            let holds_gold = tables.contains(&"gold_pairs") || tables.contains(&"eval_prompts");
            assert_eq!(
                holds_gold,
                node.spec.stage.kind() == "heldout",
                "{}",
                node.task
            );
        }
    }
}

/// (arm, task, kind, inputs as (slot, upstream task)).
type TaskShape = (String, String, &'static str, Vec<(String, String)>);

/// Per arm: every task with its kind and its inputs.
fn shape(dag: &Dag) -> BTreeSet<TaskShape> {
    dag.by_arm
        .iter()
        .map(|((arm, task), &i)| {
            let node = &dag.nodes[i];
            let inputs = node
                .inputs
                .iter()
                .map(|(slot, &j)| (slot.clone(), dag.nodes[j].task.clone()))
                .collect();
            (arm.clone(), task.clone(), kind(dag, i), inputs)
        })
        .collect()
}

#[test]
fn the_smoke_default_pipeline_has_the_default_dag() {
    let (default, smoke) = (dag(DEFAULT), dag(SMOKE));
    assert_eq!(default.arms, smoke.arms);
    assert_eq!(shape(&default), shape(&smoke));
}

#[test]
fn the_ablations_extend_the_default_arms() {
    let (default, ablations) = (dag(DEFAULT), dag(ABLATIONS));
    assert_eq!(ablations.arms.len(), 7, "{:?}", ablations.arms);
    let keep = |dag: &Dag| {
        shape(dag)
            .into_iter()
            .filter(|(arm, ..)| arm == "scir" || arm == "srlm")
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(keep(&default), keep(&ablations));
    // Same tasks, same keys: the default's objects serve the ablation's scir/srlm arms.
    let ids = |dag: &Dag| -> BTreeSet<String> {
        dag.by_arm
            .iter()
            .filter(|((arm, _), _)| arm == "scir" || arm == "srlm")
            .map(|(_, &i)| dag.nodes[i].identity.clone())
            .collect()
    };
    assert_eq!(ids(&default), ids(&ablations));
}

#[test]
fn the_methods_share_one_m0_and_keep_the_default_arms_recipes() {
    let (default, methods) = (dag(DEFAULT), dag(METHODS));
    let arms = [
        "cream",
        "external-rm",
        "frozen-judge",
        "meta-rewarding",
        "scir",
        "srlm",
    ];
    assert_eq!(methods.arms, arms);
    let m0: BTreeSet<usize> = arms
        .iter()
        .map(|arm| methods.by_arm[&(arm.to_string(), "sft@0".to_string())])
        .collect();
    assert_eq!(m0.len(), 1, "one M0 for every arm");
    // scir and srlm run the default's tasks on that M0 (plus the RM, trained once and
    // measured in eval-m0).
    let extra = ["eval-m0@0", "train-rm@0"];
    let keep = |dag: &Dag| {
        shape(dag)
            .into_iter()
            .filter(|(arm, task, ..)| {
                (arm == "scir" || arm == "srlm") && !extra.contains(&task.as_str())
            })
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(keep(&default), keep(&methods));
}

fn ok(out: Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn run(artifacts: &Path, seed: &str) -> RunRecord {
    let dir = artifacts.to_str().unwrap();
    let stdout = ok(scir(&[
        "run",
        SMOKE,
        "--seed",
        seed,
        "--json",
        "--artifacts",
        dir,
    ]));
    serde_json::from_slice(&stdout).unwrap()
}

/// Fractions in [0, 1]; lengths in [0, max_new_tokens].
fn check_range(metric: &str, v: f64) {
    let max = if metric.starts_with("length_") || metric.ends_with("_length") {
        12.0
    } else {
        1.0
    };
    assert!((0.0..=max).contains(&v), "{metric} = {v}");
}

#[test]
fn the_smoke_default_pipeline_runs_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("seed-1");
    let first = run(&a, "1");
    assert_eq!(first.status, RunStatus::Ok);
    let second = run(&a, "1");
    assert!(
        second.tasks.iter().all(|t| t.status == TaskStatus::Hit),
        "{second:?}"
    );

    let json = ok(scir(&[
        "report",
        "--json",
        "--artifacts",
        a.to_str().unwrap(),
    ]));
    let r: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(r["arms"], serde_json::json!(["scir", "srlm"]));
    let rows = r["rows"].as_array().unwrap();
    let keys: Vec<(String, i64)> = rows
        .iter()
        .map(|x| {
            (
                x["arm"].as_str().unwrap().into(),
                x["iteration"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, i64)> = ["scir", "srlm"]
        .iter()
        .flat_map(|arm| (0..=3).map(move |k| (arm.to_string(), k)))
        .collect();
    assert_eq!(keys, want);
    for row in rows {
        let values = row["values"].as_object().unwrap();
        for m in [
            "gold_sampled",
            "gold_greedy",
            "win_rate_sampled",
            "irm_acc",
            "grm_acc",
        ] {
            assert!(values[m].is_number(), "{m} missing in {row}");
        }
        for (m, v) in values {
            if let Some(v) = v.as_f64() {
                check_range(m, v);
            }
        }
    }
    for file in [
        "report.md",
        "gold.png",
        "win_rate.png",
        "judge_accuracy.png",
    ] {
        assert!(a.join("report").join(file).is_file(), "{file}");
    }
    crate::report_page::check(&a);
    tensorboard_scalars_read_back(&a);

    // judge-data: every label is its response's gold score level unless marked noisy.
    let q = "SELECT prompt, response, gold, label, noisy FROM judge_examples WHERE arm = 'scir'";
    let json = ok(scir(&[
        "sql",
        q,
        "--format",
        "json",
        "--artifacts",
        a.to_str().unwrap(),
    ]));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json).unwrap();
    assert!(rows.len() >= 8, "{} judge examples", rows.len());
    for r in &rows {
        let (prompt, response) = (
            r["prompt"].as_str().unwrap(),
            r["response"].as_str().unwrap(),
        );
        let gold = scir::world::gold::score(prompt, response).unwrap();
        // (JSON prints the float to the nearest 1e-17 or so, not bit for bit.)
        assert!((r["gold"].as_f64().unwrap() - gold).abs() < 1e-12, "{r}");
        let level = scir::world::format::score_token(scir::world::gold::level(gold, 5));
        let noisy = r["noisy"].as_bool().unwrap();
        assert_eq!(r["label"].as_str().unwrap() == level, !noisy, "{r}");
    }

    // A sweep: `--seeds 1,2` into seed-1/ (the run above: all hits) and seed-2/ (another
    // world and model), then seeds.md combines the two.
    let sweep = ok(scir(&[
        "run",
        SMOKE,
        "--seeds",
        "1,2",
        "--artifacts",
        tmp.path().to_str().unwrap(),
    ]));
    let sweep = String::from_utf8(sweep).unwrap();
    assert!(sweep.contains("2 seeds ("), "{sweep}");
    let written = std::fs::read_to_string(tmp.path().join("seeds.md")).unwrap();
    assert!(sweep.contains(&written), "{sweep}");
    let b = tmp.path().join("seed-2");
    let world = |dir: &Path| {
        let q = "SELECT prompt FROM prompts ORDER BY iteration, id LIMIT 5";
        ok(scir(&["sql", q, "--artifacts", dir.to_str().unwrap()]))
    };
    assert_ne!(world(&a), world(&b), "--seed must change the world");
    let (sa, sb) = (a.to_str().unwrap(), b.to_str().unwrap());
    let md = String::from_utf8(ok(scir(&["report", "--seeds", sa, sb]))).unwrap();
    assert!(md.starts_with("2 seeds ("), "{md}");
    assert!(md.contains("| improves on M0 |"), "{md}");
    assert!(
        md.contains("| scir | 3 |") && md.contains("| srlm | 0 |"),
        "{md}"
    );
    assert!(
        md.contains("scir − srlm @3") && md.contains("scir @3 − @0"),
        "{md}"
    );
    let json = ok(scir(&["report", "--seeds", sa, sb, "--json"]));
    let s: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(s["runs"].as_array().unwrap().len(), 2);
    for d in s["differences"].as_array().unwrap() {
        assert_eq!(d["per_seed"].as_array().unwrap().len(), 2, "{d}");
    }
}

/// `artifacts/tensorboard/<arm>/<task>/`: every train and sft task's metrics, one scalar
/// per metric column and step, tags in TRL's `train/…` names, values as the tables hold them.
fn tensorboard_scalars_read_back(a: &Path) {
    use scir::report::tensorboard::{FILE, read_events};
    let events = |arm: &str, task: &str| {
        let path = a.join("tensorboard").join(arm).join(task).join(FILE);
        read_events(&std::fs::read(&path).unwrap()).unwrap()
    };
    let q = |sql: &str| -> Vec<serde_json::Value> {
        let json = ok(scir(&[
            "sql",
            sql,
            "--format",
            "json",
            "--artifacts",
            a.to_str().unwrap(),
        ]));
        serde_json::from_slice(&json).unwrap()
    };
    for arm in ["scir", "srlm"] {
        for k in 1..=3 {
            let got = events(arm, &format!("train@{k}"));
            let rows = q(&format!(
                "SELECT step, loss, \"rewards/chosen\" AS chosen, grad_norm, lr FROM \
                 train_metrics WHERE arm = '{arm}' AND iteration = {k} ORDER BY step"
            ));
            assert!(!rows.is_empty());
            // A metric with no value at a step (NaN: nothing selected) has no event there.
            for (tag, col) in [
                ("train/loss", "loss"),
                ("train/rewards/chosen", "chosen"),
                ("train/grad_norm", "grad_norm"),
                ("train/lr", "lr"),
            ] {
                let got: Vec<(i64, f32)> = got
                    .iter()
                    .filter(|s| s.tag == tag)
                    .map(|s| (s.step, s.value))
                    .collect();
                let want: Vec<(i64, f32)> = rows
                    .iter()
                    .filter_map(|r| Some((r["step"].as_i64()?, r[col].as_f64()? as f32)))
                    .collect();
                assert_eq!(got, want, "{arm} train@{k} {tag}");
            }
            assert!(
                got.iter()
                    .all(|s| s.tag != "train/step" && s.tag != "train/epoch")
            );
        }
        let sft = events(arm, "sft@0");
        let n = q(&format!(
            "SELECT count(*) AS n FROM sft_metrics WHERE arm = '{arm}'"
        ));
        let losses = sft.iter().filter(|s| s.tag == "train/loss").count();
        assert_eq!(losses as i64, n[0]["n"].as_i64().unwrap());
    }
}

#[test]
fn report_seeds_needs_an_eval_table_in_every_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing");
    let out = scir(&["report", "--seeds", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `eval` table"));
}
