//! The bad-input catalogue (README § Reliability): a user's pipeline (a
//! Hugging Face fixture checkpoint, a JSONL prompt file, every SCIR stage) is
//! run once; then each bad input is tried against that artifacts dir with the
//! real binary. Each must fail with the expected exit status and a message
//! naming the problem, and leave the dir undamaged: the same refs, objects and
//! public files, and `scir verify` clean. The good files are restored after
//! each case. With `SCIR_CATALOGUE=<file>` the test writes the README table
//! (input, exit status, the first error line) to that file.

use std::path::Path;
use std::process::Output;

use super::harness::{
    Toy, assert_kept, assert_public_tables_read, assert_same, digests, objects, stderr, stdout,
};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/models/qwen2_bias"
);
const PROMPTS: &str = "{\"question\": \"hello there\"}\n{\"question\": \"name a color\"}\n";

fn user_pipeline(extra_grm: &str) -> String {
    format!(
        r#"iterations: 1
seed: 3
models: {{ initial: base, start: base, step: train }}
stages:
  base: {{ kind: checkpoint, params: {{ path: model }} }}
  prompts: {{ params: {{ path: prompts.jsonl, column: question }} }}
  generate:
    each_iteration: true
    inputs: {{ prompts: prompts }}
    params: {{ samples: 2, max_new_tokens: 4 }}
  score-irm: {{ each_iteration: true }}
  score-grm: {{ each_iteration: true, params: {{ mode: pairwise{extra_grm} }} }}
  consistency-filter: {{ each_iteration: true }}
  train: {{ each_iteration: true, params: {{ batch_size: 2 }} }}
"#
    )
}

/// One bad input: what to change, what to run, what must come out.
struct Case {
    input: &'static str,
    /// Files (relative to the project dir) written before the command.
    files: Vec<(&'static str, Vec<u8>)>,
    /// Files removed before the command.
    remove: Vec<&'static str>,
    argv: Vec<String>,
    code: i32,
    words: Vec<&'static str>,
    /// Tasks upstream of the bad input legitimately commit and publish.
    upstream_commits: bool,
}

fn case(input: &'static str, code: i32, words: &[&'static str]) -> Case {
    Case {
        input,
        files: Vec::new(),
        remove: Vec::new(),
        argv: vec!["run".into()],
        code,
        words: words.to_vec(),
        upstream_commits: false,
    }
}

impl Case {
    fn file(mut self, rel: &'static str, bytes: impl Into<Vec<u8>>) -> Case {
        self.files.push((rel, bytes.into()));
        self
    }
    fn pipeline(self, yaml: impl Into<String>) -> Case {
        self.file("pipeline.yaml", yaml.into())
    }
    fn without(mut self, rel: &'static str) -> Case {
        self.remove.push(rel);
        self
    }
    fn upstream_commits(mut self) -> Case {
        self.upstream_commits = true;
        self
    }
    fn sql(mut self, query: &str) -> Case {
        self.argv = vec!["sql".into(), query.into()];
        self
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in scir::engine::files::walk_files(from).unwrap() {
        std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
}

/// The fixture's safetensors with `drop` left out and `rename` renamed.
fn weights_without(drop: &str) -> Vec<u8> {
    let bytes = std::fs::read(Path::new(FIXTURE).join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != drop)
        .collect();
    assert!(kept.len() < st.len(), "{drop} is not in the fixture");
    safetensors::serialize(kept, None).unwrap()
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURE).join(rel)).unwrap()
}

fn cases() -> Vec<Case> {
    let base = user_pipeline("");
    let config = String::from_utf8(fixture("config.json")).unwrap();
    let big_vocab = config.replacen("\"vocab_size\": ", "\"vocab_size\": 1", 1);
    assert_ne!(big_vocab, config);
    let huge: String = "x".repeat(4 << 20);
    vec![
        case("pipeline: YAML syntax error", 2, &["pipeline.yaml:"])
            .pipeline(base.replace("models: {", "models: {{")),
        case(
            "pipeline: unknown top-level field (typo)",
            2,
            &["pipeline.yaml:1:", "iteration"],
        )
        .pipeline(base.replace("iterations: 1", "iteration: 1")),
        case(
            "pipeline: duplicate key",
            2,
            &["pipeline.yaml:", "duplicate"],
        )
        .pipeline(base.replace("seed: 3\n", "seed: 3\nseed: 4\n")),
        case(
            "pipeline: `yes` as a boolean",
            2,
            &["pipeline.yaml:", "swap"],
        )
        .pipeline(user_pipeline(", swap: yes")),
        case(
            "pipeline: wrong type (`samples: two`)",
            2,
            &["pipeline.yaml:", "samples"],
        )
        .pipeline(base.replace("samples: 2", "samples: two")),
        case(
            "pipeline: negative count",
            2,
            &["pipeline.yaml:", "samples"],
        )
        .pipeline(base.replace("samples: 2", "samples: -2")),
        case(
            "pipeline: unknown param",
            2,
            &["pipeline.yaml:", "batch_sise"],
        )
        .pipeline(base.replace("batch_size: 2", "batch_sise: 2")),
        case(
            "pipeline: unknown stage kind",
            2,
            &["pipeline.yaml:", "chekpoint"],
        )
        .pipeline(base.replace("kind: checkpoint", "kind: chekpoint")),
        case(
            "pipeline: input bound to an unknown stage",
            2,
            &["pipeline.yaml:", "promts"],
        )
        .pipeline(base.replace(
            "inputs: { prompts: prompts }",
            "inputs: { prompts: promts }",
        )),
        case("pipeline file missing", 2, &["pipeline.yaml"]).without("pipeline.yaml"),
        case("prompt file missing", 2, &["prompts.jsonl"]).without("prompts.jsonl"),
        case("prompt file empty (0 bytes)", 2, &["prompts.jsonl"]).file("prompts.jsonl", ""),
        case(
            "prompt file: the named column is missing",
            2,
            &["no column \"question\""],
        )
        .file("prompts.jsonl", "{\"q\": \"hello\"}\n"),
        case(
            "prompt file: every prompt empty or blank",
            2,
            &["no non-empty prompts"],
        )
        .file(
            "prompts.jsonl",
            "{\"question\": \"\"}\n{\"question\": \"  \"}\n",
        ),
        case("prompt file: not UTF-8", 2, &["prompts.jsonl"])
            .file("prompts.jsonl", b"{\"question\": \"caf\xe9\"}\n".to_vec()),
        case(
            "prompt file: one 4 MiB prompt",
            2,
            &["exceeds the model's context"],
        )
        .file("prompts.jsonl", format!("{{\"question\": \"{huge}\"}}\n"))
        .upstream_commits(),
        case("prompt file: not JSON lines", 2, &["prompts.jsonl"])
            .file("prompts.jsonl", "hello there\nname a color\n"),
        case(
            "prompt file: Parquet with the wrong schema",
            2,
            &["no column \"question\""],
        )
        .pipeline(base.replace("prompts.jsonl", "prompts.parquet"))
        .file("prompts.parquet", wrong_schema_parquet()),
        case(
            "prompt file: `.parquet` that is not Parquet",
            2,
            &["prompts.parquet"],
        )
        .pipeline(base.replace("prompts.jsonl", "prompts.parquet"))
        .file("prompts.parquet", "PAR1 this is not parquet"),
        case("checkpoint: a tensor missing", 2, &["model.safetensors"]).file(
            "model/model.safetensors",
            weights_without("model.norm.weight"),
        ),
        case(
            "checkpoint: weights file truncated",
            2,
            &["model.safetensors"],
        )
        .file(
            "model/model.safetensors",
            fixture("model.safetensors")[..4096].to_vec(),
        ),
        case(
            "checkpoint: config vocab ≠ embedding rows",
            2,
            &["config.json implies"],
        )
        .file("model/config.json", big_vocab),
        case("checkpoint: config.json missing", 2, &["config.json"]).without("model/config.json"),
        case("checkpoint: tokenizer.json corrupt", 2, &["tokenizer.json"])
            .file("model/tokenizer.json", "{ not json"),
        case(
            "judge template without `response_b`",
            2,
            &["judge.txt", "never shows response_b"],
        )
        .pipeline(user_pipeline(", template: judge.txt"))
        .file("judge.txt", "{{ prompt }}\nA: {{ response_a }}\nverdict: "),
        case("judge: empty verdict token", 2, &["verdict"])
            .pipeline(user_pipeline(", verdicts: [\"\", B]")),
        case("judge: verdict not one token", 2, &["verdict"])
            .pipeline(user_pipeline(", verdicts: [\"Alpha Beta Gamma\", B]")),
        case("judge template file missing", 2, &["judge.txt"])
            .pipeline(user_pipeline(", template: judge.txt")),
        case("SQL syntax error", 2, &["SELEC"]).sql("SELEC 1"),
        case("SQL: unknown table", 2, &["nope"]).sql("SELECT * FROM nope"),
        case("SQL: unknown column", 2, &["nope"]).sql("SELECT nope FROM prompts"),
    ]
}

/// A Parquet file whose only column is an Int64 `id`.
fn wrong_schema_parquet() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.parquet");
    let batch = arrow::record_batch::RecordBatch::try_from_iter([(
        "id",
        std::sync::Arc::new(arrow::array::Int64Array::from(vec![1, 2])) as _,
    )])
    .unwrap();
    scir::table::write(&path, &[batch]).unwrap();
    std::fs::read(path).unwrap()
}

/// The first line of stderr that carries the error.
fn message(out: &Output) -> String {
    let err = stderr(out);
    err.lines()
        .find(|l| l.starts_with("error"))
        .or_else(|| err.lines().next())
        .unwrap_or("")
        .to_string()
}

fn user_project() -> Toy {
    let toy = Toy::new(&user_pipeline(""));
    copy_dir(Path::new(FIXTURE), &toy.path("model"));
    std::fs::write(toy.path("prompts.jsonl"), PROMPTS).unwrap();
    toy
}

#[test]
fn bad_inputs_fail_clearly_and_damage_nothing() {
    let toy = user_project();
    toy.run_ok(&[]);
    let good = digests(&toy.artifacts());
    let good_objects = objects(&toy.artifacts());
    let mut rows = Vec::new();
    let mut wrong = Vec::new();
    for c in cases() {
        let saved: Vec<(&str, Option<Vec<u8>>)> = c
            .files
            .iter()
            .map(|(r, _)| *r)
            .chain(c.remove.iter().copied())
            .map(|r| (r, std::fs::read(toy.path(r)).ok()))
            .collect();
        for (rel, bytes) in &c.files {
            std::fs::write(toy.path(rel), bytes).unwrap();
        }
        for rel in &c.remove {
            std::fs::remove_file(toy.path(rel)).unwrap();
        }
        let args: Vec<&str> = c.argv[1..].iter().map(String::as_str).collect();
        let out = toy.output(&c.argv[0], &args, &[]);
        let dir = toy.dir.path().display().to_string();
        let msg = message(&out).replace(&dir, "<dir>");
        for (rel, bytes) in saved {
            match bytes {
                Some(b) => std::fs::write(toy.path(rel), b).unwrap(),
                None => {
                    let _ = std::fs::remove_file(toy.path(rel));
                }
            }
        }
        if out.status.code() != Some(c.code) {
            wrong.push(format!(
                "{}: exit {:?}, want {}: {}{}",
                c.input,
                out.status.code(),
                c.code,
                stderr(&out),
                stdout(&out)
            ));
        }
        for w in c.words.iter().filter(|w| !stderr(&out).contains(*w)) {
            wrong.push(format!("{}: want {w:?} in {}", c.input, stderr(&out)));
        }
        toy.assert_verify_clean();
        assert_public_tables_read(&toy.artifacts(), false);
        assert_kept(c.input, &good_objects, &objects(&toy.artifacts()));
        if c.upstream_commits || out.status.success() {
            // The valid upstream part was published; the good files bring back the good view.
            toy.run_ok(&[]);
        }
        assert_same(c.input, &digests(&toy.artifacts()), &good);
        rows.push(format!(
            "| {} | {} | `{}` |",
            c.input,
            c.code,
            msg.replace('|', "\\|")
        ));
    }
    let table = rows.join("\n") + "\n";
    match std::env::var_os("SCIR_CATALOGUE") {
        Some(path) => std::fs::write(path, table).unwrap(),
        None => eprintln!("{table}"),
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// A run with a changed `generate` (so it has work to do) under `wrap`.
fn changed_run(toy: &Toy, wrap: &[&str]) -> Output {
    std::fs::write(
        toy.path("pipeline.yaml"),
        user_pipeline("").replace("max_new_tokens: 4", "max_new_tokens: 5"),
    )
    .unwrap();
    let c = toy.command("run", &[], &[]);
    let mut w = std::process::Command::new(wrap[0]);
    w.args(&wrap[1..]).arg(c.get_program()).args(c.get_args());
    let out = w.output().unwrap();
    std::fs::write(toy.path("pipeline.yaml"), user_pipeline("")).unwrap();
    out
}

/// "No space left": every file write beyond 16 blocks fails (RLIMIT_FSIZE
/// via `ulimit -f`, SIGXFSZ ignored so writes get EFBIG, as on a full disk).
/// The run gets as far as its small files allow (generate … consistency-filter
/// commit; train's checkpoint does not fit): the failed task commits nothing,
/// no earlier object changes, every public table reads, `scir verify` is
/// clean, and with space again the same run completes, with the same bytes as
/// on a roomy disk.
#[test]
fn a_full_artifacts_dir_fails_the_task_and_damages_nothing() {
    let toy = user_project();
    toy.run_ok(&[]);
    let before = objects(&toy.artifacts());
    let limit = ["sh", "-c", "trap '' XFSZ; ulimit -f 16; exec \"$@\"", "sh"];
    let out = changed_run(&toy, &limit);
    eprintln!("full dir: {}", message(&out));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("File too large"), "{}", stderr(&out));
    assert_kept("after a full disk", &before, &objects(&toy.artifacts()));
    toy.assert_verify_clean();
    assert_public_tables_read(&toy.artifacts(), false);
    // With space again, the same change runs through, as on a roomy disk.
    let ok = changed_run(&toy, &["env"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    toy.assert_verify_clean();
    let roomy = user_project();
    changed_run(&roomy, &["env"]);
    assert_same(
        "full disk, then space",
        &digests(&toy.artifacts()),
        &digests(&roomy.artifacts()),
    );
}

/// A read-only artifacts dir: a read-only bind mount when running as root
/// (root ignores permission bits), else `chmod a-w` on every directory.
#[test]
fn a_read_only_artifacts_dir_is_refused_and_left_intact() {
    use std::os::unix::fs::MetadataExt;
    let toy = user_project();
    toy.run_ok(&[]);
    let good = digests(&toy.artifacts());
    let art = toy.artifacts();
    let root = std::fs::metadata(toy.path("pipeline.yaml")).unwrap().uid() == 0;
    let mounted = root && {
        let a = art.to_str().unwrap();
        let sh = format!("mount --bind {a} {a} && mount -o remount,bind,ro {a}");
        std::process::Command::new("sh")
            .args(["-c", &sh])
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        !root || mounted,
        "this test needs a read-only artifacts dir: run it as a non-root user (chmod), or as root \
         with permission to mount (a read-only bind mount); as root without it nothing can be \
         made read-only, so the test fails rather than pass without checking"
    );
    let chmod = |mode: &str| {
        let st = std::process::Command::new("chmod")
            .args(["-R", mode])
            .arg(&art)
            .status();
        assert!(st.unwrap().success());
    };
    if !root {
        chmod("a-w");
    }
    let out = changed_run(&toy, &["env"]);
    if mounted {
        let _ = std::process::Command::new("umount").arg(&art).status();
    } else {
        chmod("u+w");
    }
    eprintln!("read-only dir: {}", message(&out));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        (err.contains("Read-only file system") || err.contains("Permission denied"))
            && err.contains("must be writable"),
        "{err}"
    );
    assert_same("after a read-only dir", &digests(&toy.artifacts()), &good);
    toy.assert_verify_clean();
}
