//! Engine behaviour in-process with the test stages (the cache and commit protocol of `engine::cache` and `engine::store`).
//! Crash and concurrency tests, which need real processes, are in
//! `engine_crash.rs`.

use std::process::ExitCode;

use crate::engine_stages;
use crate::util::{Project, snapshot, with_status};
use scir::engine::runlog::{RunStatus, TaskStatus};

/// src@0 → base@0 (= model@0) → gen@1 → train@1 (= model@1) → gen@2 → train@2;
/// gen@k also reads src@0.
pub const CHAIN: &str = "\
iterations: 2
seed: 1
models: { start: base, step: train }
stages:
  src: { kind: src, params: { rows: 3, value: 1 } }
  base: { kind: ckpt, inputs: { data: src } }
  gen: { kind: gen, each_iteration: true, inputs: { data: src } }
  train: { kind: ckpt, each_iteration: true, inputs: { data: gen } }
";

const ALL: [&str; 6] = ["base@0", "gen@1", "gen@2", "src@0", "train@1", "train@2"];

fn all() -> Vec<String> {
    ALL.iter().map(|s| s.to_string()).collect()
}

#[test]
fn first_run_computes_everything_and_second_run_hits_everything() {
    let p = Project::new(CHAIN);
    let r = p.run_ok(&[]);
    assert_eq!(with_status(&r, "ran"), all());
    assert_eq!(r.status, RunStatus::Ok);
    let r2 = p.run_ok(&[]);
    assert_eq!(with_status(&r2, "hit"), all());
    assert!(p.counts().values().all(|n| *n == 1), "{:?}", p.counts());
    for k in 0..=2 {
        let f = p
            .artifacts()
            .join(format!("tables/nums/iter-{k:04}.main.parquet"));
        let batches = scir::table::read(&f).unwrap();
        let schema = batches[0].schema();
        assert_eq!(schema.field(0).name(), "iteration");
        assert_eq!(schema.fields().last().unwrap().name(), "arm");
    }
    let link = p.artifacts().join("models/main/train@2");
    assert!(
        link.join("weights.txt").is_file(),
        "checkpoint link {}",
        link.display()
    );
}

#[test]
fn param_edit_reruns_exactly_that_stage_and_its_downstream() {
    let p = Project::new(CHAIN);
    p.run_ok(&[]);
    p.write_pipeline(&CHAIN.replace(
        "train: { kind: ckpt,",
        "train: { kind: ckpt, params: { scale: 2 },",
    ));
    let r = p.run_ok(&[]);
    assert_eq!(with_status(&r, "ran"), vec!["gen@2", "train@1", "train@2"]);
    assert_eq!(with_status(&r, "hit"), vec!["base@0", "gen@1", "src@0"]);
}

#[test]
fn comments_key_order_style_and_explicit_defaults_rerun_nothing() {
    let p = Project::new(CHAIN);
    p.run_ok(&[]);
    p.write_pipeline(
        "# a comment\n\
         seed: 1   # same seed\n\
         stages:\n\
         \x20 train:\n\
         \x20   inputs: { data: gen }\n\
         \x20   each_iteration: true\n\
         \x20   kind: ckpt\n\
         \x20   params: { scale: 1, note: '' }   # defaults written out\n\
         \x20 gen: { inputs: { data: src }, kind: gen, each_iteration: true }\n\
         \x20 base: { inputs: { data: src }, kind: \"ckpt\" }\n\
         \x20 src:\n\
         \x20   params:\n\
         \x20     value: 1\n\
         \x20     rows: 3\n\
         \x20   kind: src\n\
         models: { step: train, start: base }\n\
         iterations: 2\n",
    );
    let r = p.run_ok(&[]);
    assert_eq!(with_status(&r, "hit"), all());
    assert!(with_status(&r, "ran").is_empty());
}

#[test]
fn identical_upstream_bytes_cut_off_downstream() {
    let p = Project::new(CHAIN);
    p.run_ok(&[]);
    // `note` changes gen's key but not its output bytes.
    p.write_pipeline(&CHAIN.replace(
        "inputs: { data: src } }\n  train",
        "params: { note: x }, inputs: { data: src } }\n  train",
    ));
    let r = p.run_ok(&[]);
    assert_eq!(with_status(&r, "ran"), vec!["gen@1", "gen@2"]);
    assert_eq!(
        with_status(&r, "hit"),
        vec!["base@0", "src@0", "train@1", "train@2"]
    );
}

#[test]
fn force_reruns_the_named_task_and_downstream_hits_when_bytes_match() {
    let p = Project::new(CHAIN);
    p.run_ok(&[]);
    let r = p.run_ok(&["--stage", "gen", "--iter", "1", "--downstream", "--force"]);
    assert_eq!(with_status(&r, "ran"), vec!["gen@1"]);
    assert_eq!(p.counts()["gen@1"], 2);
    assert_eq!(p.counts()["train@1"], 1);
}

#[test]
fn external_file_content_reruns_downstream_but_touch_and_copy_do_not() {
    let chain = CHAIN.replace(
        "params: { rows: 3, value: 1 }",
        "params: { rows: 3, value: 1, file: data.txt }",
    );
    let p = Project::new(&chain);
    std::fs::write(p.path("data.txt"), "abc").unwrap();
    p.run_ok(&[]);
    // Same bytes, new mtime: nothing runs.
    std::fs::write(p.path("data.txt"), "abc").unwrap();
    assert!(with_status(&p.run_ok(&[]), "ran").is_empty());
    // A copy of the whole project elsewhere: nothing runs.
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .args([
            "-r",
            &format!("{}/.", p.dir.path().display()),
            &copy.path().display().to_string(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let moved = Project { dir: copy };
    assert!(with_status(&moved.run_ok(&[]), "ran").is_empty());
    // New content: src and everything downstream reruns.
    std::fs::write(p.path("data.txt"), "abcd").unwrap();
    assert_eq!(with_status(&p.run_ok(&[]), "ran"), all());
}

#[test]
fn stage_version_bump_reruns_that_kind_and_downstream_only() {
    let p = Project::new(CHAIN);
    p.run_ok(&[]);
    let code = p
        .cmd_with(&engine_stages::registry_ckpt_v2(), "run", &[])
        .unwrap();
    assert_eq!(code, ExitCode::SUCCESS);
    let r = p.last_record().unwrap();
    assert_eq!(with_status(&r, "hit"), vec!["src@0"]);
    assert_eq!(with_status(&r, "ran").len(), 5);
}

fn assert_fails_without_object(mode: &str, reason: &str) {
    let p = Project::new(CHAIN);
    p.set_mode("gen@1", mode);
    let code = p.cmd("run", &[]).unwrap();
    assert_eq!(code, ExitCode::from(1), "mode {mode}");
    let r = p.last_record().unwrap();
    assert_eq!(with_status(&r, "failed"), vec!["gen@1"], "mode {mode}");
    let failed = r.tasks.iter().find(|t| t.task == "gen@1").unwrap();
    assert!(
        failed.reason.contains(reason),
        "mode {mode}: {}",
        failed.reason
    );
    assert_eq!(
        with_status(&r, "skipped"),
        vec!["gen@2", "train@1", "train@2"]
    );
    let refs = std::fs::read_to_string(p.artifacts().join(".scir/refs.json")).unwrap();
    assert!(!refs.contains("gen@1"), "{refs}");
    assert!(
        !p.artifacts()
            .join("tables/nums/iter-0001.main.parquet")
            .exists()
    );
    // Fixed: the rerun computes the failed task and what depends on it only.
    p.set_mode("gen@1", "");
    let r = p.run_ok(&[]);
    assert_eq!(
        with_status(&r, "ran"),
        vec!["gen@1", "gen@2", "train@1", "train@2"]
    );
}

#[test]
fn exit_without_declared_output_fails_and_commits_nothing() {
    assert_fails_without_object("no_output", "without writing its declared table");
}

#[test]
fn undeclared_output_wrong_schema_error_and_panic_fail_the_task() {
    assert_fails_without_object("extra", "not a declared output");
    assert_fails_without_object("schema", "schema");
    assert_fails_without_object("fail", "told to fail");
    assert_fails_without_object("panic", "panicked");
}

#[test]
fn keep_going_runs_independent_tasks_and_skips_dependents() {
    let yaml =
        format!("{CHAIN}  side: {{ kind: add, each_iteration: true, inputs: {{ data: src }} }}\n");
    let p = Project::new(&yaml);
    p.set_mode("gen@1", "fail");
    assert_eq!(p.cmd("run", &[]).unwrap(), ExitCode::from(1));
    let r = p.last_record().unwrap();
    assert!(with_status(&r, "skipped").contains(&"side@1".to_string()));
    assert_eq!(p.cmd("run", &["--keep-going"]).unwrap(), ExitCode::from(1));
    let r = p.last_record().unwrap();
    assert_eq!(with_status(&r, "ran"), vec!["side@1", "side@2"]);
    assert_eq!(
        with_status(&r, "skipped"),
        vec!["gen@2", "train@1", "train@2"]
    );
    let skipped = r.tasks.iter().find(|t| t.task == "train@1").unwrap();
    assert!(skipped.reason.contains("gen@1"), "{}", skipped.reason);
}

#[test]
fn flipped_byte_is_caught_by_verify_and_never_fed_downstream() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new(CHAIN);
    let r = p.run_ok(&[]);
    let key = &r.tasks.iter().find(|t| t.task == "src@0").unwrap().key;
    let file = p
        .artifacts()
        .join(format!(".scir/objects/{}/{key}/nums.parquet", &key[..2]));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    assert_eq!(p.cmd("verify", &[]).unwrap(), ExitCode::from(1));
    // base must rerun and read src@0: it refuses the damaged object.
    p.write_pipeline(&CHAIN.replace(
        "base: { kind: ckpt,",
        "base: { kind: ckpt, params: { scale: 5 },",
    ));
    assert_eq!(p.cmd("run", &[]).unwrap(), ExitCode::from(1));
    let r = p.last_record().unwrap();
    let base = r.tasks.iter().find(|t| t.task == "base@0").unwrap();
    assert_eq!(base.status, TaskStatus::Failed);
    assert!(
        base.reason.contains("damaged") && base.reason.contains("verify --fix"),
        "{}",
        base.reason
    );
    assert_eq!(
        p.counts()["base@0"],
        1,
        "the stage never ran on damaged input"
    );
    // verify --fix removes it; the next run recomputes src@0 and goes on.
    assert_eq!(p.cmd("verify", &["--fix"]).unwrap(), ExitCode::SUCCESS);
    assert_eq!(p.cmd("verify", &[]).unwrap(), ExitCode::SUCCESS);
    let r = p.run_ok(&[]);
    assert!(with_status(&r, "ran").contains(&"src@0".to_string()));
}

/// `scir verify` checks the public view against the refs (a stray file, a truncated table,
/// a model link that points elsewhere), and `--repair` restores it byte for byte from the
/// store without running a stage.
#[test]
fn verify_checks_the_public_view_and_repair_restores_it_without_running() {
    let p = Project::new(CHAIN);
    p.run_ok(&[]);
    let art = p.artifacts();
    let public = |a: &std::path::Path| {
        let mut s = snapshot(&a.join("tables"));
        for link in [
            "models/main/base@0",
            "models/main/train@1",
            "models/main/train@2",
        ] {
            let target = std::fs::read_link(a.join(link)).unwrap();
            s.insert(link.into(), target.display().to_string().into_bytes());
        }
        s
    };
    let good = public(&art);
    let runs = p.counts();
    assert_eq!(p.cmd("verify", &[]).unwrap(), ExitCode::SUCCESS);
    // A stray table file, a truncated public table, a swapped checkpoint link.
    std::fs::write(art.join("tables/nums/iter-0009.main.parquet"), b"stray").unwrap();
    let table = art.join("tables/nums/iter-0001.main.parquet");
    let bytes = std::fs::read(&table).unwrap();
    std::fs::write(&table, &bytes[..bytes.len() / 2]).unwrap();
    let link = art.join("models/main/train@2");
    let elsewhere = std::fs::read_link(art.join("models/main/train@1")).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let problems =
        scir::engine::store::view::verify(&scir::engine::store::Store::new(&art)).unwrap();
    let named: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p.path.as_str(), p.what.split(' ').next().unwrap()))
        .collect();
    assert_eq!(
        named,
        [
            ("models/main/train@2", "links"),
            ("tables/nums/iter-0001.main.parquet", "differs"),
            ("tables/nums/iter-0009.main.parquet", "stray:"),
        ],
        "{problems:?}"
    );
    assert_eq!(p.cmd("verify", &[]).unwrap(), ExitCode::from(1));
    assert_eq!(p.cmd("verify", &["--repair"]).unwrap(), ExitCode::SUCCESS);
    assert_eq!(
        public(&art),
        good,
        "the repaired view differs from the original"
    );
    assert_eq!(p.counts(), runs, "repair ran a stage");
    assert_eq!(p.cmd("verify", &[]).unwrap(), ExitCode::SUCCESS);
}

#[test]
fn single_with_missing_upstream_names_the_command_that_builds_it() {
    let p = Project::new(CHAIN);
    let err = p
        .cmd("run", &["--stage", "train", "--iter", "1", "--single"])
        .unwrap_err();
    let msg = format!("{err:#}");
    assert_eq!(scir::error::exit_code(&err), 2);
    assert!(
        msg.contains("gen@1") && msg.contains("--stage gen --iter 1"),
        "{msg}"
    );
    assert!(msg.contains("scir run"), "{msg}");
    assert!(!p.artifacts().exists(), "nothing written");
}

#[test]
fn single_runs_only_the_named_task_when_upstream_exists() {
    let p = Project::new(CHAIN);
    p.run_ok(&[]);
    p.write_pipeline(&CHAIN.replace(
        "train: { kind: ckpt,",
        "train: { kind: ckpt, params: { scale: 2 },",
    ));
    let r = p.run_ok(&["--stage", "train", "--iter", "1", "--single"]);
    assert_eq!(with_status(&r, "ran"), vec!["train@1"]);
    assert_eq!(r.tasks.len(), 1);
}

#[test]
fn dry_run_writes_nothing() {
    let p = Project::new(CHAIN);
    assert_eq!(p.cmd("run", &["--dry-run"]).unwrap(), ExitCode::SUCCESS);
    assert!(!p.artifacts().exists());
    p.run_ok(&[]);
    let before = snapshot(&p.artifacts());
    assert_eq!(
        p.cmd("run", &["--dry-run", "--force"]).unwrap(),
        ExitCode::SUCCESS
    );
    assert_eq!(snapshot(&p.artifacts()), before);
}

#[test]
fn arms_share_identical_tasks_and_compute_them_once() {
    let yaml = format!("{CHAIN}arms:\n  a: {{}}\n  b: {{ train: {{ scale: 3 }} }}\n");
    let p = Project::new(&yaml);
    let r = p.run_ok(&[]);
    let c = p.counts();
    assert_eq!((c["src@0"], c["base@0"], c["gen@1"]), (1, 1, 1));
    assert_eq!((c["train@1"], c["gen@2"], c["train@2"]), (2, 2, 2));
    let gen1: Vec<(&str, &str)> = r
        .tasks
        .iter()
        .filter(|t| t.task == "gen@1")
        .map(|t| (t.arm.as_str(), t.status.as_str()))
        .collect();
    assert_eq!(gen1, vec![("a", "ran"), ("b", "hit")]);
    for arm in ["a", "b"] {
        let f = p
            .artifacts()
            .join(format!("tables/nums/iter-0002.{arm}.parquet"));
        assert!(f.is_file(), "{}", f.display());
    }
    assert!(p.artifacts().join("models/b/train@1/weights.txt").is_file());
}

#[test]
fn same_inputs_give_byte_identical_tables_in_separate_artifact_dirs() {
    let a = Project::new(CHAIN);
    let b = Project::new(CHAIN);
    a.run_ok(&[]);
    b.run_ok(&[]);
    let (ta, tb) = (
        snapshot(&a.artifacts().join("tables")),
        snapshot(&b.artifacts().join("tables")),
    );
    assert_eq!(ta.len(), 3);
    assert_eq!(ta, tb);
    let keys = |p: &Project| {
        let mut v: Vec<String> = p
            .last_record()
            .unwrap()
            .tasks
            .iter()
            .map(|t| t.key.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(keys(&a), keys(&b));
}

#[test]
fn gc_keeps_current_objects_and_drops_old_ones() {
    let p = Project::new(CHAIN);
    p.run_ok(&[]);
    p.write_pipeline(&CHAIN.replace(
        "train: { kind: ckpt,",
        "train: { kind: ckpt, params: { scale: 2 },",
    ));
    p.run_ok(&[]);
    let objects = || {
        scir::engine::store::Store::new(&p.artifacts())
            .object_keys()
            .unwrap()
            .len()
    };
    assert_eq!(objects(), 9);
    assert_eq!(p.cmd("gc", &[]).unwrap(), ExitCode::SUCCESS);
    assert_eq!(objects(), 6);
    assert!(with_status(&p.run_ok(&[]), "ran").is_empty());
    assert_eq!(p.cmd("verify", &[]).unwrap(), ExitCode::SUCCESS);
}

#[test]
fn status_dag_and_runs_commands_work() {
    let p = Project::new(CHAIN);
    assert_eq!(p.cmd("status", &[]).unwrap(), ExitCode::SUCCESS);
    assert!(!p.artifacts().exists(), "status writes nothing");
    p.run_ok(&[]);
    for fmt in ["ascii", "dot", "mermaid"] {
        assert_eq!(p.cmd("dag", &["--format", fmt]).unwrap(), ExitCode::SUCCESS);
    }
    assert_eq!(
        p.cmd("status", &["--explain", "train@1"]).unwrap(),
        ExitCode::SUCCESS
    );
    assert_eq!(p.cmd("runs", &[]).unwrap(), ExitCode::SUCCESS);
    assert_eq!(
        p.cmd("runs", &["show", "latest"]).unwrap(),
        ExitCode::SUCCESS
    );
    let err = p.cmd("runs", &["show", "nope"]).unwrap_err();
    assert_eq!(scir::error::exit_code(&err), 2);
    let err = p.cmd("status", &["--explain", "nope@1"]).unwrap_err();
    assert_eq!(scir::error::exit_code(&err), 2);
}

#[test]
fn an_input_file_edited_while_the_task_runs_is_not_committed() {
    let chain = CHAIN.replace(
        "params: { rows: 3, value: 1 }",
        "params: { file: data.txt }",
    );
    let p = Project::new(&chain);
    std::fs::write(p.path("data.txt"), "abc").unwrap();
    p.set_mode("src@0", "rewrite");
    assert_eq!(p.cmd("run", &[]).unwrap(), ExitCode::from(1));
    let r = p.last_record().unwrap();
    let src = r.tasks.iter().find(|t| t.task == "src@0").unwrap();
    assert_eq!(src.status, TaskStatus::Failed);
    assert!(
        src.reason.contains("changed while the task ran"),
        "{}",
        src.reason
    );
    assert!(
        scir::engine::store::Store::new(&p.artifacts())
            .object_keys()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_deleted_public_view_is_restored_by_an_all_hit_run() {
    let p = Project::new(CHAIN);
    p.run_ok(&[]);
    let tables = snapshot(&p.artifacts().join("tables"));
    std::fs::remove_dir_all(p.artifacts().join("tables")).unwrap();
    std::fs::remove_dir_all(p.artifacts().join("models")).unwrap();
    let r = p.run_ok(&[]);
    assert_eq!(with_status(&r, "hit"), all());
    assert_eq!(snapshot(&p.artifacts().join("tables")), tables);
    assert!(
        p.artifacts()
            .join("models/main/base@0/weights.txt")
            .is_file()
    );
}

#[test]
fn arm_selects_one_arm_and_an_unknown_arm_is_a_user_error() {
    let yaml = format!("{CHAIN}arms:\n  a: {{}}\n  b: {{ train: {{ scale: 3 }} }}\n");
    let p = Project::new(&yaml);
    let err = p.cmd("run", &["--arm", "c"]).unwrap_err();
    let msg = format!("{err:#}");
    assert_eq!(scir::error::exit_code(&err), 2);
    assert!(msg.contains("--arm c") && msg.contains("a, b"), "{msg}");
    assert!(!p.artifacts().exists());
    let r = p.run_ok(&["--arm", "b"]);
    assert!(
        r.tasks
            .iter()
            .all(|t| t.arm == "b" && t.status == TaskStatus::Ran),
        "{:?}",
        r.tasks
    );
    assert_eq!(r.tasks.len(), 6);
    let r = p.run_ok(&[]);
    assert_eq!(
        with_status(&r, "ran"),
        vec!["gen@2", "train@1", "train@2"],
        "arm a's own tasks"
    );
}
