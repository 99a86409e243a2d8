//! Failure modes that need real processes: SIGKILL mid-task, a crash between
//! commit and refs, concurrent runs and lock holders. The test binary
//! re-executes itself as `scir` (see [`child_runner`]).

use std::process::{Child, ExitCode};

use crate::engine::CHAIN;
use crate::engine_stages;
use crate::util::{CHILD_ARGS_ENV, CHILD_REGISTRY_ENV, Project, snapshot, wait_for, with_status};
use scir::engine::runlog::{RunStatus, TaskStatus};

/// Not a test: when the env var is set, act as the `scir` binary with the
/// test stages and exit with its status (used by the tests below).
#[test]
#[ignore = "helper: runs only as a child process of other tests"]
fn child_runner() {
    let Ok(args) = std::env::var(CHILD_ARGS_ENV) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).unwrap();
    let registry =
        engine_stages::registry_named(&std::env::var(CHILD_REGISTRY_ENV).unwrap_or_default());
    let code = scir::cli::main_with_registry(args, &registry);
    let code = if code == ExitCode::SUCCESS {
        0
    } else if code == ExitCode::from(1) {
        1
    } else {
        2
    };
    std::process::exit(code);
}

fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kill(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL on Unix: no handler runs
    child.wait().unwrap();
}

#[test]
fn killed_mid_write_leaves_nothing_half_visible_and_rerun_recomputes_only_that_task() {
    let p = Project::new(CHAIN);
    p.run_ok(&[]);
    let changed = CHAIN.replace(
        "train: { kind: ckpt,",
        "train: { kind: ckpt, params: { scale: 2 },",
    );
    p.write_pipeline(&changed);
    p.set_mode("train@1", "block");
    let store = scir::engine::store::Store::new(&p.artifacts());
    let objects = store.object_keys().unwrap();
    let refs = std::fs::read(store.layout.refs_path()).unwrap();
    let tables = snapshot(&p.artifacts().join("tables"));
    let models = snapshot(&p.artifacts().join("models"));
    let mut child = p.spawn("", "run", &[], &[]);
    wait_for(&p.path("reached.train@1"));
    kill(&mut child);
    assert_eq!(store.object_keys().unwrap(), objects, "no new object");
    assert_eq!(
        std::fs::read(store.layout.refs_path()).unwrap(),
        refs,
        "refs unchanged"
    );
    assert_eq!(
        snapshot(&p.artifacts().join("tables")),
        tables,
        "public tables unchanged"
    );
    assert_eq!(
        snapshot(&p.artifacts().join("models")),
        models,
        "public models unchanged"
    );
    for (name, _) in snapshot(&p.artifacts().join("tables")) {
        let f = p.artifacts().join("tables").join(name);
        scir::table::read(&f).expect("every public table still reads");
    }
    p.set_mode("train@1", "");
    let r = p.run_ok(&[]);
    assert_eq!(with_status(&r, "ran"), vec!["gen@2", "train@1", "train@2"]);
    assert_eq!(p.counts()["train@1"], 3, "first run, killed run, rerun");
    assert_eq!(p.counts()["gen@1"], 1);
    // The dead run's staging dir is garbage now.
    assert!(std::fs::read_dir(store.layout.tmp_dir()).unwrap().count() >= 1);
    assert_eq!(p.cmd("gc", &[]).unwrap(), ExitCode::SUCCESS);
    assert_eq!(
        std::fs::read_dir(store.layout.tmp_dir()).unwrap().count(),
        0
    );
}

#[test]
fn crash_between_commit_and_refs_is_repaired_by_a_hit() {
    let p = Project::new(CHAIN);
    let child = p.spawn(
        "",
        "run",
        &[],
        &[(scir::engine::store::FAILPOINT_ENV, "after-commit")],
    );
    let (code, _) = finish(child);
    assert_ne!(code, Some(0));
    let store = scir::engine::store::Store::new(&p.artifacts());
    assert_eq!(store.object_keys().unwrap().len(), 1, "src@0 committed");
    assert!(store.read_refs().unwrap().is_empty(), "refs not updated");
    let r = p.run_ok(&[]);
    assert_eq!(
        r.tasks.iter().find(|t| t.task == "src@0").unwrap().status,
        TaskStatus::Hit
    );
    assert_eq!(p.counts()["src@0"], 1);
    assert_eq!(store.read_refs().unwrap()["main"].len(), 6);
    assert!(
        p.artifacts()
            .join("tables/nums/iter-0000.main.parquet")
            .is_file()
    );
}

#[test]
fn two_concurrent_runs_compute_each_task_once_and_end_valid() {
    let p = Project::new(CHAIN);
    // Hold src@0 so both runs are surely alive and contend for the same keys.
    p.set_mode("src@0", "wait");
    let a = p.spawn("", "run", &[], &[]);
    wait_for(&p.path("reached.src@0"));
    let b = p.spawn("", "run", &[], &[]);
    std::fs::write(p.path("go.src@0"), "").unwrap();
    let ((ca, ea), (cb, eb)) = (finish(a), finish(b));
    assert_eq!((ca, cb), (Some(0), Some(0)), "a: {ea}\nb: {eb}");
    assert!(p.counts().values().all(|n| *n == 1), "{:?}", p.counts());
    assert_eq!(p.counts().len(), 6);
    let serial = Project::new(CHAIN);
    serial.run_ok(&[]);
    let refs = |p: &Project| {
        scir::engine::store::Store::new(&p.artifacts())
            .read_refs()
            .unwrap()
    };
    assert_eq!(refs(&p), refs(&serial));
    assert_eq!(p.cmd("verify", &[]).unwrap(), ExitCode::SUCCESS);
}

#[test]
fn no_wait_names_the_lock_holder_and_a_waiter_proceeds_after_the_holder_dies() {
    let p = Project::new(CHAIN);
    p.set_mode("src@0", "wait");
    let mut holder = p.spawn("", "run", &[], &[]);
    wait_for(&p.path("reached.src@0"));
    let err = p.cmd("run", &["--no-wait"]).unwrap_err();
    let msg = format!("{err:#}");
    assert_eq!(scir::error::exit_code(&err), 2);
    assert!(
        msg.contains("computing src@0") && msg.contains("pid"),
        "{msg}"
    );
    // The holder dies; the kernel frees the lock; a new run needs no unlock.
    kill(&mut holder);
    p.set_mode("src@0", "");
    let r = p.run_ok(&["--no-wait"]);
    assert_eq!(r.status, RunStatus::Ok);
}

#[test]
fn gc_during_a_run_keeps_its_staging_dir_and_committed_objects() {
    let p = Project::new(CHAIN);
    p.set_mode("gen@1", "wait");
    let child = p.spawn("", "run", &[], &[]);
    wait_for(&p.path("reached.gen@1"));
    let store = scir::engine::store::Store::new(&p.artifacts());
    let staging_before = snapshot(&store.layout.tmp_dir()).len();
    assert_eq!(p.cmd("gc", &[]).unwrap(), ExitCode::SUCCESS);
    assert_eq!(
        store.object_keys().unwrap().len(),
        2,
        "src@0 and base@0 kept"
    );
    assert!(
        std::fs::read_dir(store.layout.tmp_dir()).unwrap().count() == 1,
        "the live run's staging dir kept"
    );
    assert!(snapshot(&store.layout.tmp_dir()).len() >= staging_before);
    std::fs::write(p.path("go.gen@1"), "").unwrap();
    let (code, err) = finish(child);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(p.cmd("verify", &[]).unwrap(), ExitCode::SUCCESS);
    assert!(p.counts().values().all(|n| *n == 1));
    // With no run alive, gc collects again (nothing is stale here).
    assert_eq!(p.cmd("gc", &[]).unwrap(), ExitCode::SUCCESS);
    assert_eq!(store.object_keys().unwrap().len(), 6);
}

#[test]
fn status_explain_names_the_changed_field() {
    let p = Project::new(CHAIN);
    p.run_ok(&[]);
    p.write_pipeline(&CHAIN.replace(
        "train: { kind: ckpt,",
        "train: { kind: ckpt, params: { scale: 2 },",
    ));
    let out = p
        .spawn("", "status", &["--explain", "train@1"], &[])
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stale") && stdout.contains("params.scale: 1 → 2"),
        "{stdout}"
    );
    let out = p.spawn("", "status", &[], &[]).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("upstream train@1 is stale"), "{stdout}");
    assert!(stdout.contains("6 tasks, 3 stale"), "{stdout}");
}

#[test]
fn dry_run_prints_the_plan_that_run_executes() {
    let p = Project::new(CHAIN);
    p.run_ok(&[]);
    p.write_pipeline(&CHAIN.replace(
        "train: { kind: ckpt,",
        "train: { kind: ckpt, params: { scale: 2 },",
    ));
    let out = p
        .spawn("", "run", &["--dry-run"], &[])
        .wait_with_output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut planned: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("run "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    planned.sort();
    let r = p.run_ok(&[]);
    assert_eq!(planned, with_status(&r, "ran"), "{stdout}");
}
