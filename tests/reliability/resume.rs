//! Resumable training: `sft` and `train` save their state every
//! `resume_every` steps into `.scir/resume/<key>/`; a task killed mid-training
//! continues from its last save and ends bit-identical; `resume_every` is not
//! part of the key; a damaged resume area is dropped, not trusted.

use scir::failpoint::TRACE_ENV;

use super::harness::{Point, TOY, Toy, assert_same, digests};
use scir::engine::runlog::TaskStatus;

/// The `nth` (1-based) training step of `task` in a traced run.
fn step_of(trace: &[Point], task: &str, nth: usize) -> Point {
    trace
        .iter()
        .filter(|p| p.site == "train-step" && p.task == task)
        .nth(nth - 1)
        .unwrap_or_else(|| panic!("{task} has fewer than {nth} steps"))
        .clone()
}

fn resume_dirs(toy: &Toy) -> Vec<std::path::PathBuf> {
    scir::engine::files::read_dir_sorted(&toy.artifacts().join(".scir/resume")).unwrap()
}

/// Training steps each task ("train@1 scir") ran in a traced run.
fn steps_run(trace_file: &str) -> std::collections::BTreeMap<String, usize> {
    let text = std::fs::read_to_string(trace_file).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(("train-step", task)) = line.split_once('\t') {
            *out.entry(task.to_string()).or_default() += 1;
        }
    }
    out
}

/// The log of `task` ("train@1 scir") in a run record.
fn task_log(rec: &scir::engine::runlog::RunRecord, task: &str) -> String {
    let (task, arm) = task.split_once(' ').unwrap();
    let t = rec.tasks.iter().find(|t| t.task == task && t.arm == arm);
    std::fs::read_to_string(&t.unwrap().log).unwrap()
}

#[test]
fn killed_training_resumes_from_its_last_save_and_ends_bit_identical() {
    let base = Toy::new(TOY);
    let trace = base.run_traced();
    let expected = digests(&base.artifacts());
    // toy.yaml: sft saves every 3 steps, train every 2.
    for (task, every) in [("sft@0 scir", 3), ("train@1 scir", 2)] {
        let total = trace
            .iter()
            .filter(|p| p.site == "train-step" && p.task == task)
            .count();
        // The last step k < total just after a save (k = j·every + 1, j ≥ 1).
        let kill_after = (every + 1..total).rev().find(|k| k % every == 1);
        let kill_after = kill_after.unwrap_or_else(|| panic!("{task}: only {total} steps"));
        let resumed_from = kill_after - 1;
        let toy = Toy::new(TOY);
        toy.run_killed_at(&step_of(&trace, task, kill_after).spec());
        let dirs = resume_dirs(&toy);
        assert_eq!(dirs.len(), 1, "{task}: one resume area, for the killed key");
        assert!(dirs[0].join("state/trainer_state.json").is_file());
        let t = toy.path("trace2.tsv").display().to_string();
        let rec = toy.run_ok(&[(TRACE_ENV, t.as_str())]);
        assert!(
            task_log(&rec, task).contains(&format!("resumed from step {resumed_from}")),
            "{task}: {}",
            task_log(&rec, task)
        );
        assert_eq!(
            steps_run(&t)[task],
            total - resumed_from,
            "{task}: only the steps after the save ran again"
        );
        assert_same(
            &format!("{task} resumed"),
            &digests(&toy.artifacts()),
            &expected,
        );
        assert!(
            resume_dirs(&toy).is_empty(),
            "resume area removed on commit"
        );
        toy.assert_verify_clean();
    }
}

#[test]
fn resume_every_is_not_part_of_the_key() {
    let toy = Toy::new(TOY);
    toy.run_ok(&[]);
    let before = digests(&toy.artifacts());
    let changed = TOY
        .replace("resume_every: 3", "resume_every: 0")
        .replace("resume_every: 2", "resume_every: 7");
    assert_ne!(changed, TOY);
    std::fs::write(toy.path("pipeline.yaml"), changed).unwrap();
    let rec = toy.run_ok(&[]);
    assert!(
        rec.tasks.iter().all(|t| t.status == TaskStatus::Hit),
        "{:?}",
        rec.tasks
    );
    assert_same("resume_every changed", &digests(&toy.artifacts()), &before);
}

#[test]
fn a_damaged_or_collected_resume_area_is_not_trusted() {
    let base = Toy::new(TOY);
    let trace = base.run_traced();
    let expected = digests(&base.artifacts());
    let kill = step_of(&trace, "sft@0 scir", 8).spec();
    // Damaged: the saved parameters are truncated.
    let toy = Toy::new(TOY);
    toy.run_killed_at(&kill);
    let params = resume_dirs(&toy)[0].join("state/params.safetensors");
    std::fs::write(&params, b"not safetensors").unwrap();
    let rec = toy.run_ok(&[]);
    assert!(
        task_log(&rec, "sft@0 scir").contains("resume state not usable, starting over"),
        "{}",
        task_log(&rec, "sft@0 scir")
    );
    assert_same("damaged resume area", &digests(&toy.artifacts()), &expected);
    // Collected: gc drops the area of a dead run (its key lock is free).
    let toy = Toy::new(TOY);
    toy.run_killed_at(&kill);
    let out = toy.output("gc", &[], &[]);
    assert!(out.status.success());
    assert!(
        super::harness::stdout(&out).contains("1 resume dirs"),
        "{}",
        super::harness::stdout(&out)
    );
    assert!(resume_dirs(&toy).is_empty());
    toy.run_ok(&[]);
    assert_same("after gc", &digests(&toy.artifacts()), &expected);
}
