//! Same pipeline, same bytes, whatever the thread count: the toy pipeline
//! with `RAYON_NUM_THREADS=1` and `=2` (candle's and scir's thread pools)
//! gives identical refs, object digests and public files.

use super::harness::{TOY, Toy, assert_same, digests};

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
