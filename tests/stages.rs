//! The SCIR stages end to end with the real `scir` binary: the smoke
//! pipeline (`tests/smoke/scir.yaml`: every stage, 2 iterations, arms `scir`
//! and `srlm`), what reruns after an edit, the tables in `scir sql`, and a
//! run on a fixture Hugging Face checkpoint with a JSONL prompt file.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::scir;
use scir::engine::runlog::{RunRecord, RunStatus, TaskStatus};

const SMOKE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smoke");
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/models/qwen2_bias"
);
const TABLES: [&str; 12] = [
    "responses",
    "pairs",
    "generate_stats",
    "response_logps",
    "irm_pairs",
    "grm_scores",
    "judge_tokens",
    "filter_pairs",
    "filter_summary",
    "train_metrics",
    "sft_metrics",
    "prompts",
];

/// `scir run PIPELINE --artifacts DIR`, whatever its outcome.
fn run_output(pipeline: &Path, artifacts: &Path) -> Output {
    scir(&[
        "run",
        pipeline.to_str().unwrap(),
        "--artifacts",
        artifacts.to_str().unwrap(),
    ])
}

fn run(pipeline: &Path, artifacts: &Path) -> RunRecord {
    let out = scir(&[
        "run",
        pipeline.to_str().unwrap(),
        "--json",
        "--artifacts",
        artifacts.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is the run record")
}

fn sql(artifacts: &Path, q: &str) -> String {
    let out = scir(&[
        "sql",
        q,
        "--format",
        "csv",
        "--artifacts",
        artifacts.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{q}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `(task, arm)` of the tasks with status `st`, sorted.
fn tasks(r: &RunRecord, st: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .tasks
        .iter()
        .filter(|t| t.status.as_str() == st)
        .map(|t| (t.task.clone(), t.arm.clone()))
        .collect();
    v.sort();
    v
}

fn ran_names(r: &RunRecord) -> Vec<String> {
    let mut v: Vec<String> = tasks(r, "ran").into_iter().map(|t| t.0).collect();
    v.dedup();
    v
}

/// The smoke pipeline copied into a temp dir (so edits do not touch the repo).
fn smoke_project() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for f in ["scir.yaml", "judge_pointwise.txt"] {
        std::fs::copy(Path::new(SMOKE_DIR).join(f), dir.path().join(f)).unwrap();
    }
    let p = dir.path().join("scir.yaml");
    (dir, p)
}

#[test]
fn smoke_runs_every_stage_in_both_arms_and_reruns_only_what_changed() {
    let (dir, pipeline) = smoke_project();
    let art = dir.path().join("artifacts");
    let first = run(&pipeline, &art);
    assert_eq!(first.status, RunStatus::Ok);
    for stage in [
        "world",
        "init",
        "sft",
        "generate",
        "score-irm",
        "score-grm",
        "consistency-filter",
        "train",
    ] {
        for arm in ["scir", "srlm"] {
            assert!(
                first.tasks.iter().any(|t| t.stage == stage && t.arm == arm),
                "{stage} [{arm}] missing"
            );
        }
    }
    // The srlm arm reuses everything upstream of its first difference.
    let hits = tasks(&first, "hit");
    for shared in [
        "world@0",
        "init@0",
        "sft@0",
        "generate@1",
        "score-irm@1",
        "score-grm@1",
    ] {
        assert!(
            hits.contains(&(shared.to_string(), "srlm".to_string())),
            "{shared} not shared: {hits:?}"
        );
    }
    for t in TABLES.iter().filter(|t| **t != "prompts") {
        let csv = sql(
            &art,
            &format!(
                "SELECT iteration, arm, count(*) AS n FROM {t} GROUP BY iteration, arm ORDER BY arm, iteration"
            ),
        );
        assert!(csv.lines().count() >= 3, "{t}: {csv}");
        assert!(csv.contains("scir") && csv.contains("srlm"), "{t}: {csv}");
    }
    let rate = sql(
        &art,
        "SELECT iteration, avg(CAST(consistent AS INT)) AS r FROM filter_pairs GROUP BY iteration ORDER BY iteration",
    );
    assert_eq!(rate.lines().count(), 3, "{rate}");
    let srlm_con = sql(
        &art,
        "SELECT count(*) AS n FROM train_metrics WHERE arm = 'srlm' AND \"loss/consistency\" IS NOT NULL",
    );
    assert_eq!(
        srlm_con.lines().nth(1),
        Some("0"),
        "srlm has no consistency loss"
    );
    let sel = sql(
        &art,
        "SELECT min(\"consistency/selected_frac\") AS lo, max(\"consistency/selected_frac\") AS hi FROM train_metrics WHERE arm = 'scir'",
    );
    assert!(!sel.lines().nth(1).unwrap().contains(",,"), "{sel}");
    trained_rate_is_measured_from_iteration_2(&art);

    // Only train.lr changes: train@1 and everything downstream reruns.
    let yaml = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(&pipeline, yaml.replace("lr: 1.0e-3", "lr: 2.0e-3")).unwrap();
    let second = run(&pipeline, &art);
    assert_eq!(
        ran_names(&second),
        [
            "consistency-filter@2",
            "generate@2",
            "score-grm@2",
            "score-irm@2",
            "train@1",
            "train@2"
        ]
    );

    // Only the judge template changes: score-grm and downstream rerun,
    // generate and score-irm do not.
    let tpl = dir.path().join("judge_pointwise.txt");
    let text = std::fs::read_to_string(&tpl).unwrap();
    std::fs::write(&tpl, text.replace("score: ", "score:  ")).unwrap();
    let third = run(&pipeline, &art);
    let ran = ran_names(&third);
    assert!(ran.contains(&"score-grm@1".to_string()), "{ran:?}");
    assert!(ran.contains(&"train@1".to_string()), "{ran:?}");
    for t in ["generate@1", "score-irm@1", "sft@0", "world@0"] {
        assert!(!ran.contains(&t.to_string()), "{t} reran: {ran:?}");
    }
}

/// `filter_summary`: the previous iteration's trained pairs, re-judged under
/// Mt — none at iteration 1, some with a rate in [0, 1] at iteration 2.
fn trained_rate_is_measured_from_iteration_2(art: &Path) {
    let csv = sql(
        art,
        "SELECT iteration, trained_pairs, trained_consistency_rate FROM filter_summary \
         WHERE arm = 'scir' ORDER BY iteration",
    );
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert_eq!(rows[0][1..], ["0", ""], "{csv}");
    let n: i64 = rows[1][1].parse().unwrap();
    let rate: f64 = rows[1][2].parse().expect("a rate at iteration 2");
    assert!(n > 0 && (0.0..=1.0).contains(&rate), "{csv}");
}

#[test]
fn hugging_face_checkpoint_and_jsonl_prompts_run_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let prompts: String = [
        "hello there",
        "what is two plus two",
        "name a color",
        "say yes",
    ]
    .iter()
    .map(|p| format!("{{\"question\": \"{p}\"}}\n"))
    .collect();
    std::fs::write(dir.path().join("prompts.jsonl"), prompts).unwrap();
    let yaml = format!(
        r#"iterations: 1
seed: 3
models: {{ initial: base, start: base, step: train }}
stages:
  base: {{ kind: checkpoint, params: {{ path: "{FIXTURE}" }} }}
  prompts: {{ params: {{ path: prompts.jsonl, column: question }} }}
  generate:
    each_iteration: true
    inputs: {{ prompts: prompts }}
    params: {{ samples: 2, max_new_tokens: 4 }}
  score-irm: {{ each_iteration: true }}
  score-grm: {{ each_iteration: true, params: {{ mode: pairwise }} }}
  consistency-filter: {{ each_iteration: true }}
  train: {{ each_iteration: true, params: {{ batch_size: 2 }} }}
arms:
  scir: {{}}
  lora:
    train: {{ lora: {{ rank: 2, alpha: 4.0, target_modules: [q_proj, v_proj] }} }}
  srlm:
    consistency-filter: {{ mode: grm_only, margin: 0.0 }}
    train: {{ method: srlm }}
"#
    );
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(&pipeline, yaml).unwrap();
    let art = dir.path().join("artifacts");
    let rec = run(&pipeline, &art);
    assert_eq!(rec.status, RunStatus::Ok);
    assert!(
        rec.tasks
            .iter()
            .any(|t| t.task == "train@1" && t.arm == "lora" && t.status == TaskStatus::Ran)
    );
    let flips = sql(
        &art,
        "SELECT count(*) AS n, count(position_flip) AS f FROM grm_scores WHERE mode = 'pairwise'",
    );
    let row = flips.lines().nth(1).unwrap().to_string();
    let (n, f) = row.split_once(',').unwrap();
    assert_eq!(n, f, "every pairwise score has a position-flip flag");
    assert!(n.parse::<i64>().unwrap() > 0);
    // The prompt ids carry the chat template (`<|im_start|>user` …).
    let ids = sql(&art, "SELECT prompt FROM responses LIMIT 1");
    assert!(
        ids.contains("hello")
            || ids.contains("what")
            || ids.contains("name")
            || ids.contains("say")
    );
}

#[test]
fn prompt_file_without_the_column_is_a_clear_user_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.csv"), "text\nhello\n").unwrap();
    let yaml = "stages:\n  prompts: { params: { path: p.csv, column: prompt } }\n";
    std::fs::write(dir.path().join("pipeline.yaml"), yaml).unwrap();
    let art = dir.path().join("artifacts");
    let out = scir(&[
        "run",
        dir.path().join("pipeline.yaml").to_str().unwrap(),
        "--artifacts",
        art.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no column \"prompt\"") && err.contains("text"),
        "{err}"
    );
}

#[test]
fn a_diverging_loss_stops_train_and_commits_nothing() {
    let (dir, pipeline) = smoke_project();
    let yaml = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(&pipeline, yaml.replace("lr: 1.0e-3", "lr: 1.0e+30")).unwrap();
    let art = dir.path().join("artifacts");
    let out = scir(&[
        "run",
        pipeline.to_str().unwrap(),
        "--json",
        "--artifacts",
        art.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("diverged"), "{err}");
    assert!(
        !art.join("tables/train_metrics").exists()
            || std::fs::read_dir(art.join("tables/train_metrics"))
                .unwrap()
                .next()
                .is_none(),
        "a failed train task published its metrics"
    );
}

#[test]
fn irm_reference_and_static_mode_do_what_they_say() {
    let (dir, pipeline) = smoke_project();
    let yaml = std::fs::read_to_string(&pipeline).unwrap();
    let arms = "arms:\n  start:\n    models: { irm_reference: iteration_start }\n  prev:\n    \
                models: { irm_reference: previous_iteration }\n    \
                consistency-filter: { mode: static }\n";
    let head = yaml.split("arms:").next().unwrap();
    std::fs::write(&pipeline, format!("{head}{arms}")).unwrap();
    let dag = scir(&["dag", pipeline.to_str().unwrap()]);
    let dag = String::from_utf8_lossy(&dag.stdout).to_string();
    assert!(dag.contains("irm_ref ← train@1 [start]"), "{dag}");
    assert!(dag.contains("irm_ref ← sft@0"), "{dag}");
    assert!(dag.contains("irm_ref ← init@0 ["), "{dag}");
    // One binding: score-irm and the filter measure against the same model in every arm.
    for line in dag.lines().filter(|l| l.contains("irm_ref ←")) {
        assert!(
            !line.contains("score-irm") && !line.contains("consistency-filter"),
            "{line}"
        );
    }
    let art = dir.path().join("artifacts");
    assert_eq!(run(&pipeline, &art).status, RunStatus::Ok);
    // Against Mt itself the implicit reward is exactly ½ before training.
    let off = sql(
        &art,
        "SELECT count(*) AS n FROM irm_pairs WHERE arm = 'start' AND p_irm <> 0.5",
    );
    assert_eq!(off.lines().nth(1), Some("0"), "{off}");
    let bad = sql(
        &art,
        "SELECT count(*) AS n FROM filter_pairs WHERE arm = 'prev' AND selected <> consistent",
    );
    assert_eq!(bad.lines().nth(1), Some("0"), "{bad}");
}

#[test]
fn a_frozen_judge_arm_judges_with_m0_in_every_iteration() {
    let (dir, pipeline) = smoke_project();
    let yaml = std::fs::read_to_string(&pipeline).unwrap();
    let head = yaml.split("arms:").next().unwrap();
    // margin 0: the smoke model's judge is near ½, and a pair must survive to train on it.
    let arms = "arms:\n  own:\n    train: { method: srlm }\n    consistency-filter: { mode: \
                grm_only, margin: 0.0 }\n  frozen:\n    models: { judge: start }\n    train: \
                { method: srlm }\n    consistency-filter: { mode: grm_only, margin: 0.0 }\n";
    std::fs::write(&pipeline, format!("{head}{arms}")).unwrap();
    let dag = scir(&["dag", pipeline.to_str().unwrap()]);
    let dag = String::from_utf8_lossy(&dag.stdout).to_string();
    let judge_of = |task: &str| -> String {
        let start = dag
            .find(task)
            .unwrap_or_else(|| panic!("{task} not in\n{dag}"));
        let rest = &dag[start..];
        let line = rest.lines().find(|l| l.contains("model ←")).unwrap();
        line.trim().to_string()
    };
    assert!(judge_of("score-grm@2 [frozen]").contains("sft@0"), "{dag}");
    assert!(judge_of("score-grm@2 [own]").contains("train@1"), "{dag}");
    // Iteration 1 is judged by M0 either way: one task, shared by the arms.
    assert!(dag.contains("score-grm@1 [frozen,own]"), "{dag}");
    let art = dir.path().join("artifacts");
    assert_eq!(run(&pipeline, &art).status, RunStatus::Ok);
    // Iteration 1 is shared, so generate@2 is too: the arms' judges score the same pairs
    // at iteration 2, with different models.
    let differ = |iteration: u32| {
        let out = sql(
            &art,
            &format!(
                "SELECT count(*) AS n FROM grm_scores a JOIN grm_scores b ON a.pair_id = \
                 b.pair_id AND a.iteration = b.iteration WHERE a.arm = 'own' AND b.arm = \
                 'frozen' AND a.iteration = {iteration} AND a.p_grm <> b.p_grm"
            ),
        );
        out.lines().nth(1).unwrap().trim().parse::<u64>().unwrap()
    };
    assert_eq!(differ(1), 0);
    assert!(differ(2) > 0);
}

/// The smoke pipeline with `arms` in place of its own.
fn smoke_with_arms(arms: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, pipeline) = smoke_project();
    let yaml = std::fs::read_to_string(&pipeline).unwrap();
    let head = yaml.split("arms:").next().unwrap();
    std::fs::write(&pipeline, format!("{head}{arms}")).unwrap();
    (dir, pipeline)
}

fn numbers(csv: &str) -> Vec<f64> {
    csv.lines()
        .skip(1)
        .map(|l| l.trim().parse::<f64>().unwrap())
        .collect()
}

#[test]
fn a_cream_arm_trains_each_prompts_best_and_worst_weighted_by_the_rankings_agreement() {
    let arms = "arms:\n  cream:\n    consistency-filter: { mode: cream }\n    train: { method: \
                cream }\n";
    let (dir, pipeline) = smoke_with_arms(arms);
    let art = dir.path().join("artifacts");
    assert_eq!(run(&pipeline, &art).status, RunStatus::Ok);
    // One selected pair per prompt with a pair: Mt's best ≻ worst by its reward.
    let wrong = sql(
        &art,
        "SELECT count(*) AS n FROM filter_pairs f JOIN cream_prompts c ON f.prompt_id = \
         c.prompt_id AND f.iteration = c.iteration WHERE f.selected AND NOT ((f.response_id_1 = \
         c.chosen AND f.response_id_2 = c.rejected AND f.label = 'y1') OR (f.response_id_2 = \
         c.chosen AND f.response_id_1 = c.rejected AND f.label = 'y2'))",
    );
    assert_eq!(numbers(&wrong), vec![0.0], "{wrong}");
    let counts = sql(
        &art,
        "SELECT (SELECT count(*) FROM filter_pairs WHERE selected) - (SELECT count(chosen) FROM \
         cream_prompts) AS d",
    );
    assert_eq!(numbers(&counts), vec![0.0], "{counts}");
    let best = sql(
        &art,
        "SELECT count(*) AS n FROM cream_prompts c JOIN cream_rewards r ON r.prompt_id = \
         c.prompt_id AND r.iteration = c.iteration JOIN cream_rewards w ON w.response_id = \
         c.chosen AND w.iteration = c.iteration WHERE r.reward > w.reward",
    );
    assert_eq!(numbers(&best), vec![0.0], "{best}");
    // k = 1: the previous model is model@initial, the IRM reference itself, so its ranking
    // is its length-normalised log-likelihood, score-irm's logp_irm_ref / length.
    let first = sql(
        &art,
        "SELECT max(abs(r.previous_reward - l.logp_irm_ref / l.length)) AS d FROM cream_rewards \
         r JOIN response_logps l ON l.response_id = r.response_id AND l.iteration = \
         r.iteration WHERE r.iteration = 1",
    );
    assert!(numbers(&first)[0] < 1e-9, "{first}");
    // C is the average of (τ + 1)/2 over the prompts with a defined τ, the same for all.
    let c = sql(
        &art,
        "SELECT max(abs(c.consistency - a.c)) AS d FROM cream_prompts c JOIN (SELECT \
         iteration, avg((tau + 1) / 2) AS c FROM cream_prompts WHERE tau IS NOT NULL GROUP BY \
         iteration) a ON a.iteration = c.iteration",
    );
    assert!(numbers(&c)[0] < 1e-12, "{c}");
    let steps = sql(
        &art,
        "SELECT count(*) AS n FROM train_metrics WHERE loss IS NOT NULL",
    );
    assert!(numbers(&steps)[0] >= 2.0, "{steps}");
}

#[test]
fn cream_and_judge_pairs_need_their_upstream_settings_and_say_so() {
    let cases = [
        (
            "arms:\n  c:\n    train: { method: cream }\n",
            "set `consistency-filter: { mode: cream }`",
        ),
        (
            "arms:\n  c:\n    generate: { pairs: disjoint }\n    consistency-filter: { mode: \
             cream }\n    train: { method: cream }\n",
            "set generate's `pairs: all`",
        ),
        (
            "arms:\n  m:\n    consistency-filter: { mode: grm_only }\n    train: { method: \
             srlm, judge_pairs: true }\n",
            "set `score-grm: { meta: { judgments: 4 } }`",
        ),
    ];
    for (arms, hint) in cases {
        let (dir, pipeline) = smoke_with_arms(arms);
        let out = run_output(&pipeline, &dir.path().join("artifacts"));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(hint), "{hint}: {err}");
    }
}

#[test]
fn an_external_rm_arm_labels_every_iteration_with_one_reward_model() {
    let (dir, pipeline) = smoke_with_arms(
        "arms:\n  rm:\n    models: { judge: reward_model }\n    consistency-filter: { mode: \
         grm_only, margin: 0.0 }\n    train: { method: srlm }\n",
    );
    let yaml = std::fs::read_to_string(&pipeline).unwrap();
    let yaml = yaml
        .replace(
            "  step: train\n",
            "  step: train\n  reward_model: train-rm\n",
        )
        .replace(
            "      gold_pairs: 4\n",
            "      gold_pairs: 4\n      judge_prompts: 8\n",
        )
        .replace(
            "  generate:\n",
            "  judge-data:\n    inputs: { model: sft }\n    params: { samples: 3, \
             max_new_tokens: 12 }\n  train-rm:\n    inputs: { judge: judge-data }\n    \
             params: { batch_size: 4, validation_every: 4 }\n  generate:\n",
        );
    std::fs::write(&pipeline, yaml).unwrap();
    let dag = scir(&["dag", pipeline.to_str().unwrap()]);
    let dag = String::from_utf8_lossy(&dag.stdout).to_string();
    assert!(dag.contains("model ← train-rm@0"), "{dag}");
    let art = dir.path().join("artifacts");
    assert_eq!(run(&pipeline, &art).status, RunStatus::Ok);
    let splits = sql(&art, "SELECT split FROM rm_summary ORDER BY split");
    assert_eq!(
        splits.lines().skip(1).collect::<Vec<_>>(),
        ["train", "validation"]
    );
    // The same RM in both iterations: a response's reward depends on it alone, and
    // p_grm = σ(r1 − r2) (τ = 1).
    let off = sql(
        &art,
        "SELECT max(abs(p_grm - 1 / (1 + exp(score_2 - score_1)))) AS d FROM grm_scores",
    );
    assert!(numbers(&off)[0] < 1e-6, "{off}");
    let tokens = sql(&art, "SELECT count(*) AS n FROM judge_tokens");
    assert_eq!(
        numbers(&tokens),
        vec![0.0],
        "a reward model has no judge tokens"
    );
    let trained = sql(&art, "SELECT count(*) AS n FROM train_metrics");
    assert!(numbers(&trained)[0] >= 2.0, "{trained}");
}

#[test]
fn a_meta_rewarding_arm_trains_judge_pairs_beside_the_actor_pairs() {
    let meta = "score-grm: { meta: { judgments: 5 } }\n    consistency-filter: { mode: \
                grm_only, margin: 0.0, rho: 0.0 }\n    train: { method: srlm, judge_pairs: true";
    let (dir, pipeline) = smoke_with_arms(&format!(
        "arms:\n  meta:\n    {meta} }}\n  capped:\n    {meta}, judge_share: 0.2 }}\n"
    ));
    let art = dir.path().join("artifacts");
    assert_eq!(run(&pipeline, &art).status, RunStatus::Ok);
    let pairs = sql(
        &art,
        "SELECT count(*) AS n, sum(CASE WHEN chosen_strength > rejected_strength AND judgments \
         >= 2 AND chosen <> rejected THEN 1 ELSE 0 END) AS ok FROM judge_pairs",
    );
    let row: Vec<u64> = pairs
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(row[0] > 0 && row[0] == row[1], "{pairs}");
    // Every step's batch draws from actor pairs and judge pairs: the steps cover both, all
    // of the judge pairs, or (judge_share 0.2) at most a fifth of the set.
    let steps = sql(
        &art,
        "SELECT t.arm, t.iteration, sum(t.pairs) AS trained, (SELECT count(*) FROM filter_pairs \
         f WHERE f.selected AND f.iteration = t.iteration AND f.arm = t.arm) AS actor, (SELECT \
         count(*) FROM judge_pairs j WHERE j.iteration = t.iteration AND j.arm = t.arm) AS judge \
         FROM train_metrics t GROUP BY t.arm, t.iteration ORDER BY 1, 2",
    );
    for line in steps.lines().skip(1) {
        let v: Vec<&str> = line.split(',').collect();
        let n = |i: usize| v[i].parse::<usize>().unwrap();
        let (trained, actor, judge) = (n(2), n(3), n(4));
        let judged = match v[0] {
            "capped" => judge.min(actor / 4),
            _ => judge,
        };
        assert_eq!(trained, actor + judged, "{steps}");
    }
    // Judge pairs leave the pipelines without `meta` alone: the table is there, empty.
    let (dir, pipeline) = smoke_project();
    let art = dir.path().join("artifacts");
    assert_eq!(run(&pipeline, &art).status, RunStatus::Ok);
    assert_eq!(
        numbers(&sql(&art, "SELECT count(*) AS n FROM judge_pairs")),
        vec![0.0]
    );
}

#[test]
fn an_arm_with_an_unknown_irm_reference_is_a_user_error_naming_the_place() {
    let (dir, pipeline) = smoke_project();
    let yaml = std::fs::read_to_string(&pipeline).unwrap();
    let head = yaml.split("arms:").next().unwrap();
    let arms = "arms:\n  start:\n    models: { irm_reference: latest }\n";
    std::fs::write(&pipeline, format!("{head}{arms}")).unwrap();
    let art = dir.path().join("artifacts");
    let out = run_output(&pipeline, &art);
    assert_eq!(out.status.code(), Some(2), "a user error exits 2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scir.yaml:")
            && err.contains("arm \"start\", models:")
            && err.contains("unknown variant `latest`")
            && err.contains("previous_iteration")
            && err.contains("judge: current | start"),
        "{err}"
    );
    assert!(!art.exists(), "a bad pipeline file wrote artifacts");
}

#[test]
fn a_verdict_that_is_not_one_token_is_a_user_error() {
    let (dir, pipeline) = smoke_project();
    let yaml = std::fs::read_to_string(&pipeline).unwrap();
    let yaml = yaml.replace(
        "{ mode: pointwise, template: judge_pointwise.txt }",
        "{ mode: pairwise, verdicts: [AA, B] }",
    );
    std::fs::write(&pipeline, yaml).unwrap();
    let art = dir.path().join("artifacts");
    let out = run_output(&pipeline, &art);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"AA\" is 2 tokens") && err.contains("exactly one token"),
        "{err}"
    );
    assert!(!art.join("tables/grm_scores").exists());
}
