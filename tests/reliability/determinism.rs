//! Same pipeline, same bytes, whatever the thread count: the toy pipeline
//! with `RAYON_NUM_THREADS=1` and `=2` (candle's and scir's thread pools)
//! gives identical refs, object digests and public files; so does the toy pipeline
//! sharded and computed by three child processes at a time (`--jobs 3`).

use super::harness::{TOY, Toy, assert_same, digests, sharded};

#[test]
fn one_and_two_threads_give_identical_digests() {
    let runs: Vec<_> = ["1", "2"]
        .iter()
        .map(|n| {
            let toy = Toy::new(TOY);
            toy.run_ok(&[("RAYON_NUM_THREADS", n)]);
            digests(&toy.artifacts())
        })
        .collect();
    assert_same("RAYON_NUM_THREADS=1 vs 2", &runs[0], &runs[1]);
}

#[test]
fn sharded_tasks_in_three_processes_give_the_unsharded_bytes() {
    let plain = Toy::new(TOY);
    plain.run_ok(&[]);
    let jobs = Toy::new(&sharded(TOY));
    let out = jobs.output("run", &["--json", "--jobs", "3"], &[]);
    assert!(out.status.success(), "{}", super::harness::stderr(&out));
    let refs = |t: &Toy| {
        scir::engine::store::Store::new(&t.artifacts())
            .read_refs()
            .unwrap()
    };
    assert_eq!(
        refs(&plain),
        refs(&jobs),
        "merged keys are the unsharded keys"
    );
    assert_same(
        "--jobs 3 sharded vs in-process unsharded",
        &digests(&plain.artifacts()),
        &digests(&jobs.artifacts()),
    );
}
