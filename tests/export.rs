//! `scir export --model-answers`: the files load the way FastChat's and AlpacaEval's readers
//! load them, with a fixture model answering.
//!
//! What the readers expect (read from their sources):
//! * FastChat MT-Bench, `fastchat/llm_judge/common.py`: `load_model_answers(dir)` globs
//!   `*.jsonl`, takes the model name from the file name (minus `.jsonl`) and keys each JSON
//!   line by `line["question_id"]`; the judges read `answer["choices"][0]["turns"][0]` and
//!   `[1]` (multi-turn). `gen_model_answer.py` writes `question_id`, `answer_id`,
//!   `model_id`, `choices: [{index, turns}]` (and a `tstamp` nothing reads).
//! * AlpacaEval, `alpaca_eval/main.py` `evaluate`: `load_or_convert_to_dataframe` reads a
//!   `.json` file with `pd.read_json` (a list of records); the prompts use `instruction`
//!   and `output`; the model's name is `generator` when it is unique.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{scir, stdout_ok};
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/models/qwen2_bias"
);

fn write_questions(dir: &Path) -> PathBuf {
    let q = dir.join("question.jsonl");
    let lines = [
        r#"{"question_id": 81, "category": "writing", "turns": ["say hello", "now say it twice"]}"#,
        r#"{"question_id": 82, "category": "math", "turns": ["what is two plus two"]}"#,
    ];
    std::fs::write(&q, lines.join("\n") + "\n").unwrap();
    q
}

fn export(format: &str, questions: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "export",
        "--model-answers",
        format,
        "--model",
        FIXTURE,
        "--questions",
        questions.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--max-new-tokens",
        "4",
    ];
    args.extend_from_slice(extra);
    PathBuf::from(stdout_ok(&scir(&args)).trim())
}

#[test]
fn mt_bench_answers_load_like_fastchat_loads_them() {
    let dir = tempfile::tempdir().unwrap();
    let q = write_questions(dir.path());
    let out = dir.path().join("mt");
    let path = export("mt-bench", &q, &out, &["--model-id", "m1"]);
    assert_eq!(path, out.join("model_answer/m1.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    // load_model_answers: keyed by question_id (kept an integer), model name = file stem.
    assert_eq!(lines[0]["question_id"], Value::from(81));
    assert_eq!(lines[1]["question_id"], Value::from(82));
    for (l, turns) in lines.iter().zip([2, 1]) {
        assert_eq!(l["model_id"], "m1");
        assert!(l["answer_id"].as_str().is_some_and(|s| s.len() == 22));
        // The judges read answer["choices"][0]["turns"][i].
        let t = l["choices"][0]["turns"].as_array().unwrap();
        assert_eq!(t.len(), turns);
        assert!(t.iter().all(Value::is_string));
        assert_eq!(l["choices"][0]["index"], 0);
    }
    // Greedy by default: the same bytes again.
    let again = export(
        "mt-bench",
        &q,
        &dir.path().join("mt2"),
        &["--model-id", "m1"],
    );
    assert_eq!(std::fs::read(&again).unwrap(), text.as_bytes());
}

#[test]
fn alpaca_eval_outputs_load_like_alpaca_eval_loads_them() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("user.jsonl");
    std::fs::write(
        &q,
        concat!(
            r#"{"id": "u0", "instruction": "say hello", "instances": [{"input": "", "output": "hi"}]}"#,
            "\n",
            r#"{"id": "u1", "instruction": "add", "instances": [{"input": "2 + 3", "output": "5"}]}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("ae");
    let path = export("alpaca-eval", &q, &out, &[]);
    assert_eq!(path, out.join("qwen2_bias/model_outputs.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let records = v.as_array().expect("a JSON list of records (pd.read_json)");
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["instruction"], "add\n\n2 + 3");
    for r in records {
        assert!(r["output"].is_string());
        assert_eq!(r["generator"], "qwen2_bias");
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["dataset", "generator", "instruction", "output"]);
    }
}

#[test]
fn a_pipeline_model_is_found_by_arm_and_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "iterations: 1\nmodels: {{ initial: base, start: base, step: train }}\nstages:\n  \
         base: {{ kind: checkpoint, params: {{ path: \"{FIXTURE}\" }} }}\n  \
         prompts: {{ params: {{ path: p.jsonl }} }}\n  \
         generate: {{ each_iteration: true, inputs: {{ prompts: prompts }} }}\n  \
         score-irm: {{ each_iteration: true }}\n  score-grm: {{ each_iteration: true }}\n  \
         consistency-filter: {{ each_iteration: true }}\n  train: {{ each_iteration: true }}\n\
         arms:\n  a: {{}}\n  b: {{ train: {{ lr: 0.001 }} }}\n"
    );
    let p = dir.path().join("tiny.yaml");
    std::fs::write(&p, yaml).unwrap();
    std::fs::write(dir.path().join("p.jsonl"), "{\"prompt\": \"hi\"}\n").unwrap();
    let art = dir.path().join("art");
    let q = write_questions(dir.path());
    let base = |extra: &[&str]| {
        let mut a = vec![
            "export",
            "--model-answers",
            "mt-bench",
            p.to_str().unwrap(),
            "--artifacts",
            art.to_str().unwrap(),
            "--questions",
            q.to_str().unwrap(),
            "--max-new-tokens",
            "2",
        ];
        a.extend_from_slice(extra);
        scir(&a)
    };
    let err = |o: Output| {
        assert_eq!(o.status.code(), Some(2), "a user error");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(err(base(&[])).contains("pass --arm NAME"));
    assert!(err(base(&["--arm", "zz"])).contains("no arm \"zz\""));
    assert!(err(base(&["--arm", "a", "--iter", "0"])).contains("run the pipeline first"));
    assert!(err(base(&["--arm", "a", "--iter", "5"])).contains("has 1 iterations"));
    stdout_ok(&scir(&[
        "run",
        p.to_str().unwrap(),
        "--artifacts",
        art.to_str().unwrap(),
        "--stage",
        "base",
    ]));
    let out = stdout_ok(&base(&["--arm", "b", "--iter", "0"]));
    let path = PathBuf::from(out.trim());
    assert_eq!(
        path,
        art.join("exports/mt-bench/model_answer/tiny-b-m0.jsonl")
    );
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["model_id"], "tiny-b-m0");
}
