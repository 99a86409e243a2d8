//! The eval stage and `scir report` on `tests/smoke/eval.yaml`.
//!
//! The model chain comes from two test-only stages (random-init tiny models
//! with the world's tokenizer): `tiny-model` (no inputs, params `seed`) and
//! `tiny-step` (each iteration, input `model`, a new model from `seed` + k),
//! so eval is tested without the training stages. The assertions are about
//! structure, ranges and determinism, not values.

use std::collections::BTreeMap;
use std::process::ExitCode;

use candle_core::Device;
use scir::engine::stage::{Outputs, Registry, Slot, Stage, StageKind, TaskContext, registry_of};
use scir::model::{Model, Preset};
use scir::report::{self, Report};
use serde::{Deserialize, Serialize};

use crate::util::{Project, snapshot};

const SMOKE: &str = include_str!("smoke/eval.yaml");

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedParams {
    seed: u64,
}

fn save_tiny(ctx: &mut TaskContext, seed: u64) -> anyhow::Result<()> {
    let config =
        serde_json::json!({"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"});
    let m = Model::from_scratch(
        scir::world::tokenizer(),
        config,
        Preset::Tiny,
        seed,
        &Device::Cpu,
    )?;
    m.save(&ctx.checkpoint_dir()?)
}

fn checkpoint_outputs() -> Outputs {
    Outputs {
        tables: vec![],
        checkpoint: true,
    }
}

struct TinyModel;
impl Stage for TinyModel {
    const VERSION: u32 = 1;
    type Params = SeedParams;
    fn outputs(&self, _: &Self::Params) -> Outputs {
        checkpoint_outputs()
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        save_tiny(ctx, p.seed)
    }
}

struct TinyStep;
const STEP_SLOTS: &[Slot] = &[Slot::checkpoint("model")];
impl Stage for TinyStep {
    const VERSION: u32 = 1;
    type Params = SeedParams;
    const INPUTS: &'static [Slot] = STEP_SLOTS;
    fn outputs(&self, _: &Self::Params) -> Outputs {
        checkpoint_outputs()
    }
    fn run(&self, p: &Self::Params, ctx: &mut TaskContext) -> anyhow::Result<()> {
        save_tiny(ctx, p.seed + u64::from(ctx.iteration))
    }
}

fn registry() -> Registry {
    let mut r = scir::stages::registry();
    r.extend(registry_of([
        StageKind::new(
            "tiny-model",
            &TinyModel,
            "test: a random-init tiny model for the world's tokenizer",
        ),
        StageKind::new(
            "tiny-step",
            &TinyStep,
            "test: stands in for train (a new random-init model per iteration)",
        ),
    ]));
    r
}

fn run_smoke() -> (Project, Report) {
    let p = Project::new(SMOKE);
    let reg = registry();
    assert_eq!(p.cmd_with(&reg, "run", &[]).unwrap(), ExitCode::SUCCESS);
    assert_eq!(p.cmd_with(&reg, "report", &[]).unwrap(), ExitCode::SUCCESS);
    let r = report::load(&p.artifacts()).unwrap();
    (p, r)
}

/// Metrics whose values are fractions.
fn is_fraction(metric: &str) -> bool {
    !metric.starts_with("length_")
}

#[test]
fn eval_metrics_cover_every_arm_and_model_in_valid_ranges() {
    let (_p, r) = run_smoke();
    assert_eq!(r.arms, ["a", "b"]);
    let keys: Vec<(String, i32)> = r
        .rows
        .iter()
        .map(|x| (x.arm.clone(), x.iteration))
        .collect();
    let want: Vec<(String, i32)> = ["a", "b"]
        .iter()
        .flat_map(|a| (0..=2).map(move |k| (a.to_string(), k)))
        .collect();
    assert_eq!(keys, want);
    for m in [
        "gold_greedy",
        "win_rate_sampled",
        "irm_acc",
        "grm_acc",
        "grm_flip_rate",
    ] {
        assert!(r.metrics.iter().any(|x| x == m), "missing {m}");
    }
    for row in &r.rows {
        assert_eq!(row.values.len(), r.metrics.len(), "{row:?}");
        for (m, v) in &row.values {
            let Some(v) = v else { continue };
            if is_fraction(m) {
                assert!(
                    (0.0..=1.0).contains(v),
                    "{m} = {v} at {}@{}",
                    row.arm,
                    row.iteration
                );
            } else {
                assert!((0.0..=12.0).contains(v), "{m} = {v}");
            }
        }
        // Every measurement had data (the smoke world has prompts and pairs).
        for m in ["gold_sampled", "irm_acc", "grm_acc", "consistency_rate"] {
            assert!(
                row.values[m].is_some(),
                "{m} missing at {}@{}",
                row.arm,
                row.iteration
            );
        }
        if row.iteration == 0 {
            // M0 against itself: every comparison is a tie.
            assert_eq!(row.values["win_rate_sampled"], Some(0.5));
            assert_eq!(row.values["win_rate_greedy"], Some(0.5));
        }
    }
    // M0 is shared by both arms: identical numbers at iteration 0.
    let at = |arm: &str, k: i32| {
        r.rows
            .iter()
            .find(|x| x.arm == arm && x.iteration == k)
            .unwrap()
    };
    assert_eq!(at("a", 0).values, at("b", 0).values);
}

#[test]
fn report_json_and_files_have_the_documented_structure() {
    let (p, r) = run_smoke();
    let json: serde_json::Value = serde_json::from_str(&r.json().unwrap()).unwrap();
    let obj = json.as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, ["arms", "metrics", "rows", "summary"]);
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    for row in rows {
        assert!(row["arm"].is_string() && row["iteration"].is_i64());
        for (m, v) in row["values"].as_object().unwrap() {
            assert!(v.is_null() || v.is_f64(), "{m}: {v}");
        }
    }
    let summary: Vec<&str> = json["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(summary[0], "sampled_grm_acc");
    let text = r.text();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .starts_with("arm  iter  sampled_grm_acc"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 7);
    let dir = scir::engine::layout::Layout::new(&p.artifacts()).report_dir();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    // Without eval-labels there is no label chart.
    assert!(!md.contains("labels.png") && !dir.join("labels.png").exists());
    for (file, ..) in &report::markdown::CHARTS[..4] {
        assert!(
            md.contains(&format!("]({file})")),
            "report.md does not show {file}"
        );
        let png = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{file}");
    }
}

/// `eval_labels` rows (as the eval-labels stage publishes them) join the report.
#[test]
fn report_includes_eval_labels_when_present() {
    let (p, _) = run_smoke();
    let rows = scir::eval::tables::label_rows(&[(
        "label_acc".into(),
        scir::eval::metrics::Mean { value: 0.75, n: 4 },
    )]);
    let batch = <scir::tables::eval::EvalLabelRow as scir::table::Table>::batch(1, rows).unwrap();
    let batch = scir::table::with_constant_str(&batch, "arm", "a").unwrap();
    let dir = p.artifacts().join("tables/eval_labels");
    std::fs::create_dir_all(&dir).unwrap();
    scir::table::write(&dir.join("iter-0001.a.parquet"), &[batch]).unwrap();
    let r = report::load(&p.artifacts()).unwrap();
    let row = r
        .rows
        .iter()
        .find(|x| x.arm == "a" && x.iteration == 1)
        .unwrap();
    assert_eq!(row.values["label_acc"], Some(0.75));
    assert!(r.summary.iter().any(|m| m == "label_acc"));
    let md = std::fs::read_to_string(report::refresh(&p.artifacts()).unwrap().unwrap()).unwrap();
    assert!(md.contains("](labels.png)"));
}

#[test]
fn same_seed_gives_the_same_eval_bytes() {
    let (a, _) = run_smoke();
    let (b, _) = run_smoke();
    let pick = |p: &Project| -> BTreeMap<String, Vec<u8>> {
        let mut out = snapshot(&p.artifacts().join("tables"));
        out.retain(|k, _| k.starts_with("eval"));
        out.extend(snapshot(
            &scir::engine::layout::Layout::new(&p.artifacts()).report_dir(),
        ));
        out
    };
    let (x, y) = (pick(&a), pick(&b));
    assert!(
        x.keys().any(|k| k.starts_with("eval_responses/")),
        "{:?}",
        x.keys()
    );
    assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
    for (k, v) in &x {
        assert!(
            v == &y[k],
            "{k} differs between two runs with the same seed"
        );
    }
}

/// `eval-labels` reads the SCIR stages' `responses` and `filter_pairs` (their shared typed
/// definitions) and gold-labels the pairs.
#[test]
fn eval_labels_reads_responses_and_filter_pairs() {
    use scir::loss::Preferred;
    use scir::table::Table;
    use scir::tables::filter_pairs::FilterPairRow;
    use scir::tables::responses::ResponseRow;
    let dir = tempfile::tempdir().unwrap();
    let response = |response_id: i64, text: &str| ResponseRow {
        response_id,
        prompt_id: 0,
        sample_idx: 0,
        prompt: "sort: cba\n".into(),
        prompt_ids: vec![],
        text: text.into(),
        token_ids: vec![],
        length: 0,
        finished: true,
    };
    let responses = vec![
        response(10, "abc"),
        response(11, "acb"),
        response(12, "abc"),
    ];
    let pair = |pair_id, r1, r2, p_irm, p_grm, consistent, label, selected| FilterPairRow {
        pair_id,
        prompt_id: 0,
        response_id_1: r1,
        response_id_2: r2,
        p_irm,
        p_grm,
        consistent,
        agreed: None,
        label,
        selected,
        forced: false,
    };
    let filter = vec![
        pair(0, 11, 10, 0.3, 0.2, true, Some(Preferred::Y2), true),
        pair(1, 10, 12, 0.6, 0.4, false, None, false),
    ];
    let (r, f) = (dir.path().join("r.parquet"), dir.path().join("f.parquet"));
    scir::table::write(&r, &[ResponseRow::batch(1, responses).unwrap()]).unwrap();
    scir::table::write(&f, &[FilterPairRow::batch(1, filter).unwrap()]).unwrap();
    let pairs = scir::eval::labels::read_own_pairs(&r, &f).unwrap();
    assert_eq!(pairs.len(), 2);
    assert!(pairs[0].gold_1 < 1.0 && pairs[0].gold_2 == 1.0);
    assert_eq!(pairs[0].label, Some(Preferred::Y2));
    assert_eq!(pairs[1].label, None);
    let m: BTreeMap<String, scir::eval::metrics::Mean> = scir::eval::labels::label_metrics(&pairs)
        .into_iter()
        .collect();
    assert_eq!(m["own_gold_tie_rate"].value, 0.5);
    assert_eq!((m["label_acc"].value, m["label_acc"].n), (1.0, 1));
    assert_eq!(m["own_irm_acc"].value, 1.0);
    // Mt on the pairs it trained on (only pair 0 was selected).
    let tiny = |seed| {
        let config = serde_json::json!({"bos_token": "<bos>", "eos_token": "<eos>"});
        Model::from_scratch(
            scir::world::tokenizer(),
            config,
            Preset::Tiny,
            seed,
            &Device::Cpu,
        )
        .unwrap()
    };
    let params = scir::eval::evaluate::EvalParams::default();
    let t: BTreeMap<String, scir::eval::metrics::Mean> =
        scir::eval::labels::trained_metrics(&params, &tiny(1), &tiny(2), &pairs)
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(t["trained_consistency_before"].value, 1.0);
    for (name, mean) in &t {
        assert_eq!(mean.n, 1, "{name}");
        assert!((0.0..=1.0).contains(&mean.value), "{name} = {}", mean.value);
    }
}
