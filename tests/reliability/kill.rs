//! Kill anywhere: SIGKILL the real `scir run` of the toy pipeline at many
//! deterministic points (see `scir::failpoint`): at task start, mid-write of a
//! Parquet file (object or public view), after a table, mid-write of a
//! checkpoint file, while saving resume state, after a training step, before
//! the manifest, before the commit rename, after the commit, after refs,
//! while publishing the view, before the run record. After each kill: every
//! committed object verifies and every public table reads; a plain rerun
//! completes, and its refs, objects and public files are byte-identical to an
//! uninterrupted run's, and `scir verify` is clean.
//!
//! The points come from a traced uninterrupted run, so they follow the code:
//! every (site, stage) pair that occurs is a group (70 in toy.yaml). CI kills
//! at [`CI_POINTS`] of them: one per site and per stage first, the rest evenly
//! spread. The ignored `kill_at_every_group` kills at one point of every
//! group, `kill_at_every_group_first_middle_last` at three per group.

use std::collections::BTreeMap;

use super::harness::{Point, TOY, Toy, assert_public_tables_read, assert_same, digests};
use scir::engine::runlog::RunStatus;

/// Kill points in CI.
const CI_POINTS: usize = 32;
/// The stages of toy.yaml.
const STAGES: [&str; 8] = [
    "world",
    "init",
    "sft",
    "generate",
    "score-irm",
    "score-grm",
    "consistency-filter",
    "train",
];

/// `n` of `points`: one per site of [`SITES`] (each in a stage not yet
/// covered when possible), one per stage of [`STAGES`], then evenly spread.
fn ci_subset(points: &[Point], n: usize) -> Vec<Point> {
    let mut chosen: Vec<usize> = Vec::new();
    for site in SITES {
        let covered =
            |i: &usize, c: &[usize]| c.iter().any(|j| points[*j].stage() == points[*i].stage());
        let of_site: Vec<usize> = (0..points.len())
            .filter(|i| points[*i].site == site)
            .collect();
        if let Some(i) = of_site
            .iter()
            .find(|i| !covered(i, &chosen))
            .or(of_site.first())
        {
            chosen.push(*i);
        }
    }
    for stage in STAGES {
        if !chosen.iter().any(|j| points[*j].stage() == stage)
            && let Some(i) = (0..points.len()).find(|i| points[*i].stage() == stage)
        {
            chosen.push(i);
        }
    }
    let rest: Vec<usize> = (0..points.len()).filter(|i| !chosen.contains(i)).collect();
    let want = n.saturating_sub(chosen.len()).min(rest.len());
    chosen.extend((0..want).map(|j| rest[j * rest.len() / want.max(1)]));
    chosen.sort_unstable();
    chosen.into_iter().map(|i| points[i].clone()).collect()
}

/// Parallel kill workers (each a few processes; mostly waiting on fsync).
const WORKERS: usize = 3;

/// Every (site, stage) group of the trace with its points, in trace order.
fn groups(trace: &[Point]) -> Vec<Vec<Point>> {
    let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut out: Vec<Vec<Point>> = Vec::new();
    for p in trace {
        let g = (p.site.clone(), p.stage().to_string());
        let i = *index.entry(g).or_insert_with(|| {
            out.push(Vec::new());
            out.len() - 1
        });
        out[i].push(p.clone());
    }
    out
}

/// `picks` points of each group: evenly spread (first, …, last).
fn spread(groups: &[Vec<Point>], picks: usize) -> Vec<Point> {
    let mut out = Vec::new();
    for g in groups {
        let mut idx: Vec<usize> = (0..picks)
            .map(|j| match picks {
                1 => g.len() / 2,
                _ => j * (g.len() - 1) / (picks - 1),
            })
            .collect();
        idx.dedup();
        out.extend(idx.into_iter().map(|i| g[i].clone()));
    }
    out
}

/// Kill at each point in turn (fresh artifacts each), rerun, compare.
fn kill_and_compare(points: &[Point], expected: &BTreeMap<String, String>) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(p) = points.get(i) else { break };
                    kill_once(p, expected);
                }
            });
        }
    });
}

fn kill_once(p: &Point, expected: &BTreeMap<String, String>) {
    let toy = Toy::new(TOY);
    toy.run_killed_at(&p.spec());
    toy.assert_verify_clean();
    assert_public_tables_read(&toy.artifacts(), true);
    let rec = toy.run_ok(&[]);
    assert_eq!(rec.status, RunStatus::Ok);
    assert_same(
        &format!("after a kill at {} ({})", p.spec(), p.task),
        &digests(&toy.artifacts()),
        expected,
    );
    toy.assert_verify_clean();
    assert_public_tables_read(&toy.artifacts(), false);
}

fn baseline() -> (Vec<Vec<Point>>, BTreeMap<String, String>) {
    let toy = Toy::new(TOY);
    let trace = toy.run_traced();
    toy.assert_verify_clean();
    (groups(&trace), digests(&toy.artifacts()))
}

/// The sites every kill set must cover.
const SITES: [&str; 12] = [
    "task-start",
    "parquet-write",
    "table-written",
    "checkpoint-file",
    "resume-save",
    "train-step",
    "before-manifest",
    "before-commit",
    "after-commit",
    "after-refs",
    "view-file",
    "before-record",
];

#[test]
fn killed_anywhere_a_rerun_gives_the_same_bytes() {
    let (groups, expected) = baseline();
    let points = ci_subset(&spread(&groups, 1), CI_POINTS);
    let stages: std::collections::BTreeSet<&str> = points.iter().map(Point::stage).collect();
    for stage in STAGES {
        assert!(stages.contains(stage), "no kill point in {stage}");
    }
    for site in SITES {
        assert!(points.iter().any(|p| p.site == site), "no kill at {site}");
    }
    assert!(points.len() >= 30, "only {} kill points", points.len());
    let shown: Vec<String> = points
        .iter()
        .map(|p| format!("{} ({})", p.spec(), p.task))
        .collect();
    eprintln!("killing at {} points: {}", points.len(), shown.join(", "));
    kill_and_compare(&points, &expected);
}

#[test]
#[ignore = "slow (about 2x the CI set): run with --ignored"]
fn kill_at_every_group() {
    let (groups, expected) = baseline();
    let points = spread(&groups, 1);
    eprintln!("killing at {} points", points.len());
    kill_and_compare(&points, &expected);
}

#[test]
#[ignore = "slow (about 6x the CI set): run with --ignored"]
fn kill_at_every_group_first_middle_last() {
    let (groups, expected) = baseline();
    let points = spread(&groups, 3);
    eprintln!("killing at {} points", points.len());
    kill_and_compare(&points, &expected);
}
