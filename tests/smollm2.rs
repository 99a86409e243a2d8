//! The real-model path (issue 8) on a fixture checkpoint with a chat template: Self-Instruct
//! prompts (`instructions`), the MT-Bench pair-v2 chat judge (`builtin:mt-bench-pair`, verdict
//! read after the pre-filled `[[`), LoRA training merged into Mt+1 with Mt (adapters off) as
//! the cached reference, and the held-out win rate judged by M0 (`answers`, `grm-winrate`).
//! The SmolLM2 tokenizer check skips when `examples/smollm2/setup.sh` has not run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::common::{assert_same_gradients, seeded_lora_b};
use crate::util::{scir, stdout_ok};
use scir::model::config::ModelConfig;
use scir::model::tokenizer::Text;
use scir::stages::common::judge::{self, JudgeTemplate};
use scir::table::Table;
use scir::tables::grm_scores::GrmScoreRow;
use scir::tables::judge_pairs::JudgePairRow;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/models/qwen2_bias"
);

/// CSV rows (header dropped) of a query.
fn sql(art: &Path, q: &str) -> Vec<Vec<String>> {
    let out = stdout_ok(&scir(&[
        "sql",
        q,
        "--format",
        "csv",
        "--artifacts",
        art.to_str().unwrap(),
    ]));
    out.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn task(id: usize, instruction: &str, input: &str) -> String {
    serde_json::json!({
        "id": format!("t{id}"),
        "instruction": instruction,
        "instances": [{ "input": input, "output": "unused" }],
    })
    .to_string()
}

/// A project dir with Self-Instruct-style prompt and held-out files.
fn project(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let seeds = [
        ("say hello", ""),
        ("name a color", ""),
        ("add the numbers", "2 + 3"),
        ("what is two plus two", ""),
    ];
    let lines: Vec<String> = seeds
        .iter()
        .enumerate()
        .map(|(i, (a, b))| task(i, a, b))
        .collect();
    std::fs::write(dir.path().join("seed.jsonl"), lines.join("\n") + "\n").unwrap();
    let held: Vec<String> = ["say yes", "name a fruit", "count to three"]
        .iter()
        .enumerate()
        .map(|(i, a)| task(i, a, ""))
        .collect();
    std::fs::write(dir.path().join("heldout.jsonl"), held.join("\n") + "\n").unwrap();
    let p = dir.path().join("pipeline.yaml");
    std::fs::write(&p, yaml.replace("FIXTURE", FIXTURE)).unwrap();
    (dir, p)
}

const PIPELINE: &str = r#"iterations: 2
seed: 5
models: { initial: base, start: base, step: train }
stages:
  base: { kind: checkpoint, params: { path: "FIXTURE" } }
  prompts: { kind: instructions, params: { path: seed.jsonl, iterations: 2 } }
  heldout: { kind: instructions, params: { path: heldout.jsonl } }
  generate:
    each_iteration: true
    inputs: { prompts: prompts }
    params: { samples: 2, max_new_tokens: 5 }
  score-irm: { each_iteration: true }
  score-grm: { each_iteration: true, params: { template: "builtin:mt-bench-pair" } }
  consistency-filter: { each_iteration: true }
  train:
    each_iteration: true
    params: { batch_size: 2, lr: 0.05, lora: { rank: 2, alpha: 4.0, target_modules: [q_proj, v_proj] } }
  answers-m0: { kind: answers, inputs: { model: model@0, prompts: heldout }, params: { max_new_tokens: 5 } }
  answers: { each_iteration: true, inputs: { prompts: heldout }, params: { max_new_tokens: 5 } }
  grm-winrate: { each_iteration: true }
arms:
  scir: {}
  srlm:
    consistency-filter: { mode: grm_only, margin: 0.0 }
    train: { method: srlm }
"#;

fn fixture_text() -> Text {
    let dir = Path::new(FIXTURE);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    Text::load(dir, &ModelConfig::from_json(&cfg).unwrap()).unwrap()
}

fn tensors(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            let f32s: Vec<u8> = match v.dtype() {
                safetensors::Dtype::F32 => v.data().to_vec(),
                other => panic!("{n}: {other:?}"),
            };
            (n, f32s)
        })
        .collect()
}

#[test]
fn chat_judge_lora_and_heldout_winrate_run_end_to_end() {
    let (dir, pipeline) = project(PIPELINE);
    let art = dir.path().join("artifacts");
    run_ok(&pipeline, &art);

    // Prompts: instruction + blank line + input.
    let p = sql(
        &art,
        "SELECT prompt = concat('add the numbers', chr(10), chr(10), '2 + 3') FROM prompts \
         WHERE id = 2 AND arm = 'scir'",
    );
    assert_eq!(p, [["true".to_string()]]);

    // The judge prompt: pair-v2's system message, the chat template, the "[[" prefill.
    let text = fixture_text();
    let grm =
        GrmScoreRow::read_path(&art.join("tables/grm_scores/iter-0001.scir.parquet")).unwrap();
    let ids = grm[0].judge_ids_1.clone();
    let decoded = text.decode(&ids, false).unwrap();
    assert!(
        decoded.contains("<|im_start|>system\nPlease act as an impartial judge"),
        "{decoded}"
    );
    assert!(
        decoded.ends_with("<|im_start|>assistant\n[["),
        "{decoded:?}"
    );
    let flags = sql(
        &art,
        "SELECT count(*), count(position_flip) FROM grm_scores",
    );
    assert_eq!(
        flags[0][0], flags[0][1],
        "every pair has a position-flip flag"
    );

    // Held-out win rate: one row per arm and iteration, outcomes add up.
    let rows = sql(
        &art,
        "SELECT arm, iteration, n, wins + ties + losses, judged + identical FROM grm_winrate \
         ORDER BY 1, 2",
    );
    assert_eq!(rows.len(), 4, "{rows:?}");
    for r in &rows {
        assert_eq!(
            (r[2].as_str(), r[3].as_str(), r[4].as_str()),
            ("3", "3", "3")
        );
    }

    // LoRA: Mt+1 differs from Mt only in the adapted (merged) projections.
    let base = tensors(Path::new(FIXTURE));
    let m1 = tensors(&art.join("models/srlm/train@1"));
    let changed: Vec<&String> = base.keys().filter(|n| base[*n] != m1[*n]).collect();
    assert!(!changed.is_empty(), "train@1 changed no weight");
    for n in &changed {
        assert!(
            n.ends_with("q_proj.weight") || n.ends_with("v_proj.weight"),
            "{n} changed"
        );
    }

    export_preferences_match_the_filter(&art);
    export_sft_matches_the_answers(&art);

    // The DPO reference is Mt without adapters (cached by score-irm): at the first step the
    // fresh adapters are zero, so the policy equals the reference.
    let first = sql(
        &art,
        "SELECT \"rewards/chosen\", \"rewards/rejected\" FROM train_metrics \
         WHERE arm = 'srlm' AND iteration = 1 AND step = 1",
    );
    for v in &first[0] {
        let x: f64 = v.parse().unwrap();
        assert!(x.abs() < 1e-4, "reward at step 1 is {x}, not ~0");
    }
}

/// `scir run PIPELINE --artifacts ART`, which must succeed.
fn run_ok(pipeline: &Path, art: &Path) {
    stdout_ok(&scir(&[
        "run",
        pipeline.to_str().unwrap(),
        "--artifacts",
        art.to_str().unwrap(),
    ]));
}

/// `scir export ARGS --artifacts ART`.
fn export(art: &Path, args: &[&str]) -> std::process::Output {
    let at = ["--artifacts", art.to_str().unwrap()];
    scir(&[&["export"], args, &at].concat())
}

/// `scir export --preferences`: per arm and iteration, the filter's selected, labelled pairs
/// with the labelled response as `chosen`, in Parquet and JSONL; an unknown arm is a user
/// error.
fn export_preferences_match_the_filter(art: &Path) {
    let out = art.join("prefs");
    let listed = stdout_ok(&export(
        art,
        &["--preferences", "--out", out.to_str().unwrap()],
    ));
    let (mut total, mut files) = (0, 0);
    for arm in ["scir", "srlm"] {
        for k in [1, 2] {
            let query = format!(
                "SELECT f.pair_id, CASE WHEN f.label = 'y1' THEN r1.text ELSE r2.text END AS c \
                 FROM filter_pairs f JOIN responses r1 ON r1.arm = f.arm AND \
                 r1.iteration = f.iteration AND r1.response_id = f.response_id_1 \
                 JOIN responses r2 ON r2.arm = f.arm AND r2.iteration = f.iteration AND \
                 r2.response_id = f.response_id_2 WHERE f.arm = '{arm}' AND \
                 f.iteration = {k} AND f.selected AND f.label IS NOT NULL ORDER BY 1"
            );
            let json = stdout_ok(&scir(&[
                "sql",
                &query,
                "--format",
                "ndjson",
                "--artifacts",
                art.to_str().unwrap(),
            ]));
            let want: Vec<Vec<String>> = json
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    vec![v["pair_id"].to_string(), v["c"].as_str().unwrap().into()]
                })
                .collect();
            let jsonl = out.join(format!("{arm}/iter-{k}.jsonl"));
            if want.is_empty() {
                assert!(!jsonl.exists(), "no file for an iteration without pairs");
                continue;
            }
            files += 2;
            let text = std::fs::read_to_string(&jsonl).unwrap();
            let got: Vec<Vec<String>> = text
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    assert_eq!(v["iteration"], k);
                    assert!(v["prompt"].is_string() && v["rejected"].is_string());
                    vec![
                        v["pair_id"].to_string(),
                        v["chosen"].as_str().unwrap().into(),
                    ]
                })
                .collect();
            assert_eq!(got, want, "{arm} iteration {k}");
            let parquet = out.join(format!("{arm}/iter-{k}.parquet"));
            let batches = scir::table::read(&parquet).unwrap();
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert_eq!(rows, got.len());
            total += rows;
            let names: Vec<String> = scir::table::schema_of(&parquet)
                .unwrap()
                .fields()
                .iter()
                .take(4)
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(names, ["iteration", "prompt", "chosen", "rejected"]);
        }
    }
    assert!(total > 0, "no trained pair exported at all");
    assert_eq!(listed.lines().count(), files, "{listed}");
    let bad = export(art, &["--preferences", "--arm", "nope"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("scir, srlm"), "{err}");
}

/// `scir export --sft`: per arm and iteration, the greedy held-out answers as TRL
/// conversational data (the prompt as the user turn, the trimmed answer as the assistant's).
fn export_sft_matches_the_answers(art: &Path) {
    let out = art.join("sft");
    let listed = stdout_ok(&export(
        art,
        &["--sft", "--arm", "srlm", "--out", out.to_str().unwrap()],
    ));
    assert_eq!(
        listed.lines().count(),
        6,
        "M0, M1, M2 in two formats: {listed}"
    );
    for k in 0..=2 {
        let want = sql(
            art,
            &format!(
                "SELECT prompt_id, finished FROM answers WHERE arm = 'srlm' AND iteration = {k} \
                 ORDER BY prompt_id"
            ),
        );
        let text = std::fs::read_to_string(out.join(format!("srlm/iter-{k}.jsonl"))).unwrap();
        let got: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got.len(), want.len(), "iteration {k}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g["prompt_id"].to_string(), w[0]);
            assert_eq!(g["finished"].to_string(), w[1]);
            assert_eq!(g["iteration"], k);
            let roles: Vec<&str> = g["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["role"].as_str().unwrap())
                .collect();
            assert_eq!(roles, ["user", "assistant"]);
            let answer = g["messages"][1]["content"].as_str().unwrap();
            assert_eq!(answer, answer.trim());
        }
        let prompts = sql(
            art,
            &format!(
                "SELECT count(*) FROM answers a JOIN heldout_prompts p ON p.arm = a.arm \
                 AND p.id = a.prompt_id WHERE a.arm = 'srlm' AND a.iteration = {k} AND \
                 a.prompt = p.prompt"
            ),
        );
        assert_eq!(
            prompts[0][0],
            want.len().to_string(),
            "prompts are the held-out ones"
        );
        let parquet = out.join(format!("srlm/iter-{k}.parquet"));
        let schema = scir::table::schema_of(&parquet).unwrap();
        let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
        assert_eq!(names, ["iteration", "messages", "prompt_id", "finished"]);
    }
    let bad = export(art, &["--sft", "--table", "no_such_table"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("no no_such_table table"),
        "{err}"
    );
}

#[test]
fn a_prefill_that_merges_with_the_verdict_is_a_user_error() {
    let yaml = PIPELINE.replace(
        "params: { template: \"builtin:mt-bench-pair\" }",
        "params: { template: judge.txt, verdicts: [t, c] }",
    );
    let (dir, pipeline) = project(&yaml);
    std::fs::write(
        dir.path().join("judge.txt"),
        "{% block user %}{{ prompt }} A: {{ response_a }} B: {{ response_b }}{% endblock %}\
         {% block assistant %}x: {% endblock %}",
    )
    .unwrap();
    let art = dir.path().join("artifacts");
    let out = scir(&[
        "run",
        pipeline.to_str().unwrap(),
        "--artifacts",
        art.to_str().unwrap(),
        "--stage",
        "score-grm",
        "--iter",
        "1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("does not follow the judge template's prefill"),
        "{err}"
    );
}

/// `PIPELINE` with an external-rm arm whose reward model learns from demonstrations
/// (`demo.jsonl`'s outputs) preferred over M0's answers to the same tasks.
fn demo_rm_pipeline(dir: &Path, pipeline: &Path) {
    let demos: Vec<String> = [
        ("greet a friend", "Hello, friend!"),
        ("name a planet", "Mars"),
        ("say a number", "seven"),
        ("spell cat", "c a t"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (instruction, output))| {
        serde_json::json!({
            "id": format!("d{i}"),
            "instruction": instruction,
            "instances": [{ "input": "", "output": output }],
        })
        .to_string()
    })
    .collect();
    std::fs::write(dir.join("demo.jsonl"), demos.join("\n") + "\n").unwrap();
    let yaml = std::fs::read_to_string(pipeline)
        .unwrap()
        .replace("step: train }", "step: train, reward_model: train-rm }")
        .replace(
            "  generate:\n",
            "  rm-tasks: { kind: instructions, params: { path: demo.jsonl, offset: 1 } }\n  \
             answers-rm: { kind: answers, inputs: { model: model@0, prompts: rm-tasks }, \
             params: { max_new_tokens: 4 } }\n  \
             demo-pairs: { inputs: { answers: answers-rm }, params: { path: demo.jsonl } }\n  \
             train-rm:\n    inputs: { judge: demo-pairs }\n    \
             params: { epochs: 2, batch_size: 2, validation_every: 0 }\n  generate:\n",
        )
        .replace(
            "arms:\n",
            "arms:\n  external-rm:\n    models: { judge: reward_model }\n    \
             consistency-filter: { mode: grm_only, margin: 0.0 }\n    train: { method: srlm }\n",
        );
    std::fs::write(pipeline, yaml).unwrap();
}

#[test]
fn demonstrations_over_own_answers_train_the_external_rm_arm() {
    let (dir, pipeline) = project(PIPELINE);
    demo_rm_pipeline(dir.path(), &pipeline);
    let art = dir.path().join("artifacts");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            pipeline.to_str().unwrap(),
            "--artifacts",
            art.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        scir(&args)
    };
    stdout_ok(&run(&["--arm", "external-rm"]));
    // One pair per answered task (offset 1: the last three), the demonstration chosen.
    let pairs = sql(
        &art,
        "SELECT prompt_id, prompt, chosen, chosen_finished, source FROM preferences \
         WHERE arm = 'external-rm' ORDER BY prompt_id",
    );
    let expected = [
        ["1", "name a planet", "Mars", "true", "d1"],
        ["2", "say a number", "seven", "true", "d2"],
        ["3", "spell cat", "c a t", "true", "d3"],
    ];
    assert_eq!(pairs, expected.map(|r| r.map(str::to_string)));
    let rejected = sql(
        &art,
        "SELECT count(*) FROM preferences p JOIN answers_rm_answers a ON a.prompt_id = p.prompt_id \
         AND a.arm = p.arm WHERE a.text = p.rejected AND p.arm = 'external-rm'",
    );
    assert_eq!(rejected, [["3".to_string()]], "rejected = M0's answer");
    let steps = sql(
        &art,
        "SELECT count(*) FROM rm_metrics WHERE arm = 'external-rm'",
    );
    assert_eq!(steps, [["4".to_string()]], "3 pairs, batch 2, 2 epochs");
    // Both iterations judged by that one RM: p_grm = σ(r1 − r2), no judge tokens.
    let off = sql(
        &art,
        "SELECT max(abs(p_grm - 1 / (1 + exp(score_2 - score_1)))) < 1e-6, count(*) > 0 \
         FROM grm_scores",
    );
    assert_eq!(off, [["true".to_string(), "true".to_string()]]);
    let iterations = sql(
        &art,
        "SELECT DISTINCT iteration FROM train_metrics ORDER BY 1",
    );
    assert_eq!(iterations, [["1".to_string()], ["2".to_string()]]);

    // Bad settings are user errors that say what to change. `fails(from, to, stage)` runs
    // `stage` alone with `from` replaced by `to` in the pipeline file, then restores it.
    let fails = |from: &str, to: &str, stage: &str| -> String {
        let yaml = std::fs::read_to_string(&pipeline).unwrap();
        assert!(yaml.contains(from), "{from}");
        std::fs::write(&pipeline, yaml.replace(from, to)).unwrap();
        let out = run(&["--arm", "external-rm", "--stage", stage, "--single"]);
        std::fs::write(&pipeline, yaml).unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // max_length leaves out the pairs with a longer sequence: all of them here.
    let rm = "validation_every: 0 }";
    let err = fails(rm, "validation_every: 0, max_length: 2 }", "train-rm");
    assert!(err.contains("longer than max_length 2"), "{err}");
    // Every prompt held out: nothing to train on.
    let err = fails(rm, "validation_every: 1 }", "train-rm");
    assert!(
        err.contains("3 held out by validation_every 1") && err.contains("validation_every: 0"),
        "{err}"
    );
    // Answers of another file: a user error naming the file.
    let err = fails(
        "{ path: demo.jsonl } }",
        "{ path: seed.jsonl } }",
        "demo-pairs",
    );
    assert!(
        err.contains("seed.jsonl") && err.contains("does not answer line"),
        "{err}"
    );
}

const META_PIPELINE: &str = r#"iterations: 1
seed: 5
models: { initial: base, start: base, step: train }
stages:
  base: { kind: checkpoint, params: { path: "FIXTURE" } }
  prompts: { kind: instructions, params: { path: seed.jsonl, iterations: 1 } }
  generate:
    each_iteration: true
    inputs: { prompts: prompts }
    params: { samples: 2, max_new_tokens: 5 }
  score-irm: { each_iteration: true }
  score-grm:
    each_iteration: true
    params:
      mode: pointwise
      template: "builtin:mt-bench-single"
      meta: { judgments: 4, template: "builtin:meta-judge" }
  consistency-filter: { each_iteration: true, params: { mode: grm_only, margin: 0.0, rho: 0.0 } }
  train:
    each_iteration: true
    params: { method: srlm, judge_pairs: true, batch_size: 2, lr: 0.05, lora: { rank: 2, alpha: 4.0, target_modules: [q_proj, v_proj] } }
"#;

/// Meta-Rewarding on a chat model: the MT-Bench single-answer judge rates each response
/// after the pre-filled `Rating: [[`, the chat meta-judge compares sampled ratings, and each
/// judge pair is the judge prompt with two whole judgments (rating, `]]`, EOS), trained
/// next to the actor pairs.
#[test]
fn meta_rewarding_judges_and_meta_judges_through_chat_templates() {
    let (dir, pipeline) = project(META_PIPELINE);
    let art = dir.path().join("artifacts");
    run_ok(&pipeline, &art);
    let text = fixture_text();
    let rows =
        JudgePairRow::read_path(&art.join("tables/judge_pairs/iter-0001.main.parquet")).unwrap();
    assert!(!rows.is_empty(), "no judge pairs");
    let close = text.encode_response("]]", false).unwrap();
    let eos = text.eos_id().unwrap();
    let answer = |rating: &str| {
        let id = judge::single_token(&text, rating, "score").unwrap();
        [vec![id], close.clone(), vec![eos]].concat()
    };
    for r in &rows {
        let prompt = text.decode(&r.judge_ids, false).unwrap();
        assert!(prompt.contains("on a scale of 1 to 5"), "{prompt}");
        assert!(
            prompt.ends_with("<|im_start|>assistant\nRating: [["),
            "{prompt:?}"
        );
        assert_ne!(r.chosen, r.rejected);
        assert!(r.chosen_strength > r.rejected_strength, "{r:?}");
        assert_eq!(r.chosen_ids, answer(&r.chosen));
        assert_eq!(r.rejected_ids, answer(&r.rejected));
    }
    // train@1 took the selected actor pairs and every judge pair.
    let n = sql(
        &art,
        "SELECT (SELECT count(*) FROM filter_pairs WHERE selected), \
         (SELECT sum(pairs) FROM train_metrics)",
    );
    let (actor, trained): (usize, usize) = (n[0][0].parse().unwrap(), n[0][1].parse().unwrap());
    assert_eq!(trained, actor + rows.len());
}

const SFT_PIPELINE: &str = r#"iterations: 1
seed: 3
stages:
  base: { kind: checkpoint, params: { path: "FIXTURE" } }
  chats: { kind: sft-data, params: { path: chats.jsonl } }
  m0:
    kind: sft
    inputs: { model: base, data: chats }
    params: { steps: 1, batch_size: 3, lr: 1.0e-3, warmup_steps: 0 }
  m0-lora:
    kind: sft
    inputs: { model: base, data: chats }
    params: { steps: 1, batch_size: 3, lr: 1.0e-3, warmup_steps: 0, lora: { rank: 2, alpha: 4.0, target_modules: [q_proj] } }
  prefs: { kind: preference-data, params: { path: prefs.jsonl } }
  judge-sft:
    kind: sft
    inputs: { model: base, data: chats, judge: prefs }
    params: { steps: 1, batch_size: 4, warmup_steps: 0, ift: false, judge_template: "builtin:mt-bench-pair" }
"#;

/// A user's conversations in TRL's `messages` form train M0: one example per assistant
/// turn, the loss on the assistant's tokens only (the reply and the chat template's end of
/// turn, nothing of the prompt). A TRL preference file (standard and conversational rows)
/// becomes judge seed data: two pairwise examples per pair, answered with a verdict and EOS.
#[test]
fn a_users_messages_file_trains_m0_on_the_assistant_turns() {
    let (dir, pipeline) = project(SFT_PIPELINE);
    let chats = [
        serde_json::json!({ "messages": [
            { "role": "user", "content": "say hello" },
            { "role": "assistant", "content": "Hello!" },
        ]}),
        serde_json::json!({ "messages": [
            { "role": "system", "content": "You are terse." },
            { "role": "user", "content": "name a color" },
            { "role": "assistant", "content": "Blue." },
            { "role": "user", "content": "another" },
            { "role": "assistant", "content": "Red or green." },
        ], "id": "extra fields are ignored" }),
    ];
    let lines: Vec<String> = chats.iter().map(|c| c.to_string()).collect();
    std::fs::write(dir.path().join("chats.jsonl"), lines.join("\n") + "\n").unwrap();
    let prefs = [
        serde_json::json!({ "prompt": "say hello", "chosen": "Hello!", "rejected": "No." }),
        serde_json::json!({
            "prompt": [{ "role": "user", "content": "name a color" }],
            "chosen": [{ "role": "assistant", "content": "Blue." }],
            "rejected": [{ "role": "assistant", "content": "Seven." }],
        }),
    ];
    let lines: Vec<String> = prefs.iter().map(|c| c.to_string()).collect();
    std::fs::write(dir.path().join("prefs.jsonl"), lines.join("\n") + "\n").unwrap();
    let art = dir.path().join("artifacts");
    run_ok(&pipeline, &art);
    let rows = sql(
        &art,
        "SELECT record, turn, completion FROM sft_examples ORDER BY id",
    );
    let want = [
        ["0", "0", "Hello!"],
        ["1", "0", "Blue."],
        ["1", "1", "Red or green."],
    ];
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (r, w) in rows.iter().zip(want) {
        assert_eq!([r[0].as_str(), r[1].as_str(), r[2].as_str()], w);
    }
    // The one step sees each example once: its response tokens are the assistant turns'.
    let text = fixture_text();
    let mut tokens = 0;
    for chat in &chats {
        let m: Vec<scir::model::Message> =
            serde_json::from_value(chat["messages"].clone()).unwrap();
        for (i, _) in m.iter().enumerate().filter(|(_, m)| m.role == "assistant") {
            let prompt = text.render_chat(&m[..i], true).unwrap();
            let whole = text.render_chat(&m[..=i], false).unwrap();
            let reply = whole.strip_prefix(&prompt).unwrap();
            assert!(reply.starts_with(&m[i].content), "{reply:?}");
            tokens += text.encode_response(reply, false).unwrap().len();
        }
    }
    let step = sql(&art, "SELECT tokens, loss FROM m0_sft_metrics");
    assert_eq!(step[0][0], tokens.to_string());
    let judge = sql(&art, "SELECT tokens FROM judge_sft_sft_metrics");
    assert_eq!(
        judge,
        [["8".to_string()]],
        "2 pairs × 2 orders × (verdict, EOS)"
    );
    let pairs = sql(
        &art,
        "SELECT prompt, chosen, rejected, source FROM preferences ORDER BY id",
    );
    assert_eq!(pairs[1][..3], ["name a color", "Blue.", "Seven."]);
    assert!(pairs[1][3].ends_with("prefs.jsonl:2"), "{:?}", pairs[1]);
    assert!(step[0][1].parse::<f64>().unwrap().is_finite());
    let base = tensors(Path::new(FIXTURE));
    let m0 = tensors(&art.join("models/main/m0@0"));
    assert!(
        base.keys().any(|n| base[n] != m0[n]),
        "SFT changed no weight"
    );
    // Under LoRA only the targeted projections change (the adapters merged into them).
    let lora = tensors(&art.join("models/main/m0-lora@0"));
    let changed: Vec<&String> = base.keys().filter(|n| base[*n] != lora[*n]).collect();
    assert!(!changed.is_empty(), "LoRA SFT changed no weight");
    assert!(
        changed
            .iter()
            .all(|n| n.ends_with("self_attn.q_proj.weight")),
        "{changed:?}"
    );
}

#[test]
fn mt_bench_template_reads_single_verdict_tokens_on_the_fixture() {
    let text = fixture_text();
    let t = JudgeTemplate::new(judge::MT_BENCH_PAIR, "built-in").unwrap();
    let j = t.pairwise("Q", "one", "two").unwrap();
    for v in ["A", "B"] {
        let id = judge::single_token(&text, v, "verdict").unwrap();
        judge::check_seam(&text, &j, v, id).unwrap();
    }
}

/// SmolLM2's vocabulary: `[[` then `A`/`B` are single tokens (ids 32803, 49, 50), and so are
/// the ratings after `Rating: [[`; a prefill
/// ending in a space is refused because `" A"` is one token there.
#[test]
#[ignore = "needs the SmolLM2 model: run examples/smollm2/setup.sh, then cargo test -- --ignored smollm2"]
fn smollm2_verdicts_follow_the_mt_bench_prefill() {
    let dir = smollm2_dir();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let text = Text::load(&dir, &ModelConfig::from_json(&cfg).unwrap()).unwrap();
    let t = JudgeTemplate::new(judge::MT_BENCH_PAIR, "built-in").unwrap();
    let j = t.pairwise("What is 2+2?", "4", "5").unwrap();
    let ids = judge::encode(&text, &j).unwrap();
    assert_eq!(
        ids.last(),
        Some(&32803),
        "the prompt ends with the `[[` token"
    );
    for (v, want) in [("A", 49), ("B", 50)] {
        let id = judge::single_token(&text, v, "verdict").unwrap();
        assert_eq!(id, want);
        judge::check_seam(&text, &j, v, id).unwrap();
    }
    // The pointwise judge's ratings after `Rating: [[`, the meta-judge's verdicts after `[[`.
    let single = JudgeTemplate::new(judge::MT_BENCH_SINGLE, "built-in").unwrap();
    let j = single.pointwise("What is 2+2?", "4").unwrap();
    for s in ["1", "2", "3", "4", "5"] {
        let id = judge::single_token(&text, s, "score").unwrap();
        judge::check_seam(&text, &j, s, id).unwrap();
    }
    let meta = JudgeTemplate::new(judge::META_INSTRUCT, "built-in").unwrap();
    let j = meta.meta("What is 2+2?", "4", "2", "5").unwrap();
    for (v, want) in [("A", 49), ("B", 50)] {
        judge::check_seam(&text, &j, v, want).unwrap();
    }
    let spaced = JudgeTemplate::new(
        "{% block user %}{{ prompt }}{% endblock %}{% block assistant %}Verdict: {% endblock %}",
        "test",
    )
    .unwrap()
    .pairwise("Q", "a", "b")
    .unwrap();
    let err = judge::check_seam(&text, &spaced, "A", 49).unwrap_err();
    assert!(err.to_string().contains("BPE merges them"), "{err}");
}

/// The SmolLM2 checkpoint's directory (asserting `examples/smollm2/setup.sh` has run).
fn smollm2_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/smollm2/model");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is not there; run examples/smollm2/setup.sh",
        dir.display()
    );
    dir
}

/// One LoRA step of SCIR's shape on SmolLM2 — the policy's log-probs of a pair against the
/// base model's (DPO), and the MT-Bench judge's verdict gaps in both orders — gives the same
/// loss and the same adapter gradients on the fast path as on candle's autograd.
#[test]
#[ignore = "needs the SmolLM2 model: run examples/smollm2/setup.sh, then cargo test -- --ignored smollm2"]
fn smollm2_lora_step_is_the_same_on_both_paths() {
    use candle_core::{DType, Device};
    use scir::loss::dpo_sigmoid_offset;
    use scir::model::lora::{LoraConfig, LoraSet};
    use scir::model::score::{Pair, response_logprobs};
    use scir::model::trainer::StepOutputs;
    use scir::model::{Adapters, Message, Model, Weights};
    let mut m = Model::load(&smollm2_dir(), Weights::Frozen, &Device::Cpu).unwrap();
    let cfg = LoraConfig {
        rank: 8,
        alpha: 16.0,
        target_modules: vec!["q_proj".into(), "v_proj".into()],
        use_rslora: false,
        seed: 1,
    };
    let set = LoraSet::attach(cfg, &mut m.decoder, DType::F32).unwrap();
    seeded_lora_b(&set, 1, 0.02);
    let text = &m.text;
    let q = "Name three primary colors and say why they are called primary.";
    let (y1, y2) = (
        "Red, yellow and blue: mixing them gives the other colors.",
        "Green.",
    );
    let prompt = text
        .encode_chat_prompt(&[Message::user(q.to_string())])
        .unwrap();
    let items = [y1, y2].map(|y| Pair {
        prompt: prompt.clone(),
        response: text.encode_response(y, true).unwrap(),
    });
    let t = JudgeTemplate::new(judge::MT_BENCH_PAIR, "built-in").unwrap();
    let judged = [(y1, y2), (y2, y1)]
        .map(|(a, b)| judge::encode(text, &t.pairwise(q, a, b).unwrap()).unwrap());
    let reference = response_logprobs(&m.decoder, &items, 0, Adapters::Off).unwrap();
    let step = |mut out: StepOutputs| {
        let lp = out.response_logprobs(&items).unwrap();
        let gaps = out.verdict_logit_gaps(&judged, (49, 50)).unwrap();
        let (pc, pr) = (lp.narrow(0, 0, 1).unwrap(), lp.narrow(0, 1, 1).unwrap());
        let (rc, rr) = (
            reference.narrow(0, 0, 1).unwrap(),
            reference.narrow(0, 1, 1).unwrap(),
        );
        let dpo = dpo_sigmoid_offset([&pc, &pr, &rc, &rr], 0.1, 0.0, None).unwrap();
        let judge = (gaps.sqr().unwrap().mean_all().unwrap() * 0.1).unwrap();
        let loss = (dpo.losses.mean_all().unwrap() + judge).unwrap();
        let value = loss.to_scalar::<f32>().unwrap();
        (value, out.gradients(&loss).unwrap())
    };
    let fast = StepOutputs::new(&m.decoder, 0);
    assert!(
        matches!(fast, StepOutputs::Fast(_)),
        "LoRA takes the fast path"
    );
    let (want, want_g) = step(StepOutputs::Candle {
        dec: &m.decoder,
        pad_id: 0,
    });
    let (got, got_g) = step(fast);
    assert!(
        (want - got).abs() / (1.0 + want.abs()) < 1e-5,
        "loss {got} vs candle's {want}"
    );
    assert_same_gradients(&set.named_vars(), &want_g, &got_g, 1e-6);
}
