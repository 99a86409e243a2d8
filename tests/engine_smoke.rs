//! The smoke pipeline with the real `scir` binary: a first run computes the
//! whole current DAG, a second `scir run --json` reports every task `hit`.

use std::process::Command;

use scir::engine::runlog::{RunRecord, RunStatus, TaskStatus};

const SMOKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smoke/pipeline.yaml");

fn scir_run(artifacts: &std::path::Path) -> (RunRecord, f64) {
    let start = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_scir"))
        .args(["run", SMOKE, "--json", "--artifacts"])
        .arg(artifacts)
        .output()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).expect("stdout is the run record"),
        secs,
    )
}

#[test]
fn smoke_pipeline_runs_then_hits_everything() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    let (first, secs) = scir_run(&artifacts);
    eprintln!("first smoke run: {secs:.2} s");
    assert_eq!(first.status, RunStatus::Ok);
    assert!(
        first.tasks.iter().all(|t| t.status == TaskStatus::Ran),
        "{:?}",
        first.tasks
    );
    let (second, secs) = scir_run(&artifacts);
    eprintln!("second smoke run (all hits): {secs:.2} s");
    assert!(!second.tasks.is_empty());
    assert!(
        second.tasks.iter().all(|t| t.status == TaskStatus::Hit),
        "{:?}",
        second.tasks
    );
    assert_eq!(first.tasks.len(), second.tasks.len());
}
