//! Bad pipeline files: each gives a one-screen user error (exit 2) naming
//! `pipeline.yaml:LINE:COL`, and leaves `artifacts/` untouched.

use crate::util::Project;

const MAX_LINES: usize = 25;

/// `yaml` must fail with a message containing `pipeline.yaml:{line}:` and
/// every one of `words`, before anything is written.
fn bad(yaml: &str, line: u32, words: &[&str]) {
    let p = Project::new(yaml);
    for cmd in ["run", "status", "dag"] {
        let err = p.cmd(cmd, &[]).expect_err(yaml);
        let msg = format!("{err:#}");
        assert_eq!(scir::error::exit_code(&err), 2, "{msg}");
        assert!(
            msg.contains(&format!("pipeline.yaml:{line}:")),
            "want line {line} in:\n{msg}"
        );
        for w in words {
            assert!(msg.contains(w), "want {w:?} in:\n{msg}");
        }
        assert!(msg.lines().count() <= MAX_LINES, "too long:\n{msg}");
        assert!(
            !p.artifacts().exists(),
            "{cmd} wrote artifacts for:\n{yaml}"
        );
    }
}

#[test]
fn syntax_error() {
    bad("stages:\n  src: { kind: src\n  add: {}\n", 3, &[]);
}

#[test]
fn unknown_top_level_field() {
    bad("iteration: 2\nstages:\n  src: {}\n", 1, &["iteration"]);
}

#[test]
fn unknown_stage_field() {
    bad("stages:\n  src:\n    knd: src\n", 3, &["knd"]);
}

#[test]
fn unknown_param_names_the_stage_and_field() {
    bad(
        "stages:\n  src:\n    params: { rowz: 3 }\n",
        3,
        &["\"src\"", "rowz"],
    );
}

#[test]
fn duplicate_key() {
    bad(
        "stages:\n  src: { kind: src }\n  src: { kind: src }\n",
        3,
        &["src"],
    );
}

#[test]
fn wrong_type() {
    bad("iterations: two\nstages:\n  src: {}\n", 1, &[]);
    bad(
        "stages:\n  src:\n    params: { rows: many }\n",
        3,
        &["params.rows"],
    );
}

#[test]
fn yes_is_not_a_boolean() {
    bad("stages:\n  src:\n    each_iteration: yes\n", 3, &[]);
}

#[test]
fn unknown_stage_kind() {
    bad(
        "stages:\n  src: {}\n  x:\n    kind: nosuch\n",
        4,
        &["nosuch", "Known kinds", "src"],
    );
}

#[test]
fn unknown_stage_in_a_reference() {
    bad(
        "stages:\n  src: {}\n  add:\n    inputs: { data: nosuch }\n",
        4,
        &["nosuch", "src"],
    );
}

#[test]
fn cycle() {
    bad(
        "stages:\n  a:\n    kind: add\n    inputs: { data: b }\n  b:\n    kind: add\n    inputs: { data: a }\n",
        3,
        &["cycle", "a@0", "b@0"],
    );
}

#[test]
fn missing_input_file() {
    bad(
        "stages:\n  src:\n    params: { file: missing.txt }\n",
        3,
        &["missing.txt", "does not exist"],
    );
}

#[test]
fn negative_or_zero_counts() {
    bad("iterations: -1\nstages:\n  src: {}\n", 1, &["at least 1"]);
    bad("iterations: 0\nstages:\n  src: {}\n", 1, &["at least 1"]);
    bad(
        "stages:\n  src:\n    params: { rows: -3 }\n",
        3,
        &["params.rows"],
    );
}

#[test]
fn empty_pipeline() {
    bad("", 1, &["empty"]);
    bad("# nothing but a comment\n", 1, &["empty"]);
    bad("seed: 3\n", 1, &["no stages"]);
}

#[test]
fn unknown_stage_in_an_arm() {
    bad(
        "stages:\n  src: {}\narms:\n  a: {}\n  b:\n    nosuch: { x: 1 }\n",
        6,
        &["\"b\"", "nosuch"],
    );
}

#[test]
fn empty_arms() {
    bad("stages:\n  src: {}\narms: {}\n", 3, &["arms"]);
}

#[test]
fn bad_param_in_an_arm_override_names_the_arm() {
    bad(
        "stages:\n  src: {}\narms:\n  a:\n    src: { rows: x }\n",
        2,
        &["arm \"a\"", "params.rows", ":5:"],
    );
}

#[test]
fn unbound_and_unknown_slots() {
    bad("stages:\n  src: {}\n  add: {}\n", 3, &["data"]);
    bad(
        "stages:\n  src: {}\n  add:\n    inputs: { data: src, dta: src }\n",
        4,
        &["dta", "data"],
    );
}

#[test]
fn bad_reference_syntax() {
    bad(
        "stages:\n  src: {}\n  add:\n    inputs: { data: src@k+1 }\n",
        4,
        &["src@k+1", "STAGE@k-1"],
    );
}

#[test]
fn model_reference_without_a_model_chain() {
    bad(
        "stages:\n  src: {}\n  gen:\n    each_iteration: true\n    inputs: { data: src }\n",
        4,
        &["models"],
    );
}

#[test]
fn reference_before_the_first_iteration() {
    bad(
        "stages:\n  src: {}\n  a:\n    kind: add\n    each_iteration: true\n    inputs: { data: a@k-1 }\n",
        6,
        &["a@0", "does not exist"],
    );
}

#[test]
fn a_slot_bound_to_the_wrong_kind_of_output() {
    bad(
        "models: { start: src, step: g }\nstages:\n  src: {}\n  g:\n    kind: gen\n    each_iteration: true\n    inputs: { data: src }\n",
        5,
        &["checkpoint"],
    );
}

#[test]
fn a_missing_pipeline_file_is_a_user_error() {
    let p = Project::new("stages: { src: {} }\n");
    std::fs::remove_file(p.pipeline()).unwrap();
    let err = p.cmd("run", &[]).unwrap_err();
    assert_eq!(scir::error::exit_code(&err), 2);
    assert!(!p.artifacts().exists());
}

#[test]
fn the_shipped_pipelines_load() {
    let reg = scir::stages::registry();
    for path in ["pipeline.yaml", "tests/smoke/pipeline.yaml"] {
        let pipeline = scir::engine::config::load(std::path::Path::new(path), &reg).unwrap();
        scir::engine::dag::build(&pipeline).unwrap();
    }
}

#[test]
fn shards_on_a_stage_that_cannot_be_sharded() {
    bad(
        "stages:\n  src:\n    shards: 2\n",
        3,
        &["\"src\"", "cannot be sharded"],
    );
    bad("stages:\n  src:\n    shards: 0\n", 3, &["shards", "1 to"]);
}

#[test]
fn bad_resources_name_the_field() {
    bad(
        "stages:\n  src:\n    resources: { mem: 3.5G }\n",
        3,
        &["resources.mem", "32G"],
    );
    bad(
        "stages:\n  src:\n    resources: { time: 2h }\n",
        3,
        &["resources.time"],
    );
    bad("stages:\n  src:\n    resources: { cpu: 2 }\n", 3, &["cpu"]);
}
