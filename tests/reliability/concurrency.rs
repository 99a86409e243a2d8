//! Four `scir run` at once on one artifacts dir (two pipelines × two runs
//! each, sharing every task upstream of `train`) while `scir sql` queries
//! the tables in a loop: every key is computed exactly once, every query
//! succeeds, every run ends `ok` with the keys a serial run gets, and
//! `scir verify` is clean.

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};

use scir::engine::runlog::{RunRecord, RunStatus, TaskStatus};

use super::harness::{TOY, Toy, stderr};

/// Tables queried in the loop (when they have files).
const QUERIED: [&str; 6] = [
    "prompts",
    "responses",
    "filter_pairs",
    "sft_metrics",
    "train_metrics",
    "scir_tasks",
];

fn variant() -> String {
    let v = TOY.replace("lr: 1.0e-3", "lr: 2.0e-3");
    assert_ne!(v, TOY);
    v
}

/// (task, arm) → key of a run record.
fn keys(r: &RunRecord) -> BTreeMap<(String, String), String> {
    r.tasks
        .iter()
        .map(|t| ((t.task.clone(), t.arm.clone()), t.key.clone()))
        .collect()
}

/// Sets the flag when dropped.
struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Once the first public table exists, query every table in [`QUERIED`]
/// that exists, until `done`; returns the number of queries.
fn query_loop(toy: &Toy, done: &AtomicBool) -> usize {
    let first = toy
        .artifacts()
        .join("tables/prompts/iter-0000.scir.parquet");
    while !first.exists() && !done.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut n = 0;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let out = toy.output("sql", &["SHOW TABLES"], &[]);
        assert!(out.status.success(), "SHOW TABLES: {}", stderr(&out));
        n += 1;
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        for t in QUERIED.iter().filter(|t| shown.contains(*t)) {
            let q = format!("SELECT count(*) AS n FROM {t}");
            let out = toy.output("sql", &[q.as_str()], &[]);
            assert!(out.status.success(), "{q}: {}", stderr(&out));
            n += 1;
        }
        if finished {
            return n;
        }
    }
}

#[test]
fn four_concurrent_runs_and_queries_compute_each_key_once() {
    let toy = Toy::new(TOY);
    std::fs::write(toy.path("variant.yaml"), variant()).unwrap();
    let spawn = |pipeline: &str| -> Child {
        let mut c = toy.command_with(pipeline, "run", &["--json"], &[]);
        c.spawn().unwrap()
    };
    let done = AtomicBool::new(false);
    let (records, queries) = std::thread::scope(|s| {
        let q = s.spawn(|| query_loop(&toy, &done));
        // Stop the query loop however this closure ends (a failed run panics).
        let _stop = Stop(&done);
        let children: Vec<(String, Child)> = [
            "pipeline.yaml",
            "variant.yaml",
            "pipeline.yaml",
            "variant.yaml",
        ]
        .iter()
        .map(|p| (p.to_string(), spawn(p)))
        .collect();
        let records: Vec<(String, RunRecord)> = children
            .into_iter()
            .map(|(p, c)| {
                let out = c.wait_with_output().unwrap();
                assert!(out.status.success(), "{p}: {}", stderr(&out));
                (p, serde_json::from_slice(&out.stdout).unwrap())
            })
            .collect();
        done.store(true, Ordering::SeqCst);
        (records, q.join().unwrap())
    });
    eprintln!("{queries} queries during 4 concurrent runs");
    assert!(queries > 0);
    // Every key ran exactly once over all four runs.
    let mut ran: BTreeMap<String, usize> = BTreeMap::new();
    for (_, r) in &records {
        assert_eq!(r.status, RunStatus::Ok);
        for t in r.tasks.iter().filter(|t| t.status == TaskStatus::Ran) {
            *ran.entry(t.key.clone()).or_default() += 1;
        }
    }
    let all: std::collections::BTreeSet<&String> = records
        .iter()
        .flat_map(|(_, r)| r.tasks.iter().map(|t| &t.key))
        .collect();
    assert!(ran.values().all(|n| *n == 1), "{ran:?}");
    assert_eq!(ran.len(), all.len(), "every key computed by some run");
    // Each run has the keys a serial run of its pipeline gets.
    for (name, yaml) in [
        ("pipeline.yaml", TOY.to_string()),
        ("variant.yaml", variant()),
    ] {
        let serial = Toy::new(&yaml);
        let expected = keys(&serial.run_ok(&[]));
        for (_, r) in records.iter().filter(|(p, _)| p == name) {
            assert_eq!(keys(r), expected, "{name}");
        }
    }
    toy.assert_verify_clean();
}
