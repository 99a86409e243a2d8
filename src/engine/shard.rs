//! Sharded tasks: one task's rows split into N shards, computed as separate tasks and merged.
//!
//! ```text
//!   stages:
//!     generate: { each_iteration: true, shards: 4 }
//!
//!   generate@1#1of4 ─┐   each shard: the stage's `run` with `ctx.shard` set; it computes
//!   generate@1#2of4 ─┤   only its contiguous slice of the rows ([`Shard::range`])
//!   generate@1#3of4 ─┼─▶ generate@1: the stage's `merge` over the shards' tables, in order
//!   generate@1#4of4 ─┘
//! ```
//!
//! Invariants:
//! - The merged task has the key of the unsharded task (`shards` is not a param and not in
//!   its key material), and its tables are byte-identical to the unsharded task's: a
//!   stage may declare itself shardable ([`crate::engine::stage::Stage::SHARDABLE`]) only if
//!   every row's value depends on that row alone (per-row seeds, scores that do not depend
//!   on the batch) and its merge restores the unsharded row order. So a sharded and an
//!   unsharded run share every object downstream, and `shards` can change between runs.
//! - A shard's key is the unsharded key material plus `shard: {index, count}`; its objects
//!   are never published (no refs, not in the public view) and `scir gc` may remove them
//!   once the merged object exists.
//! - A shard whose merged object already exists is not run (`not needed`).

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Shard `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Every shard of `count`, in order.
    pub fn all(count: u32) -> impl Iterator<Item = Shard> {
        (0..count).map(move |index| Shard { index, count })
    }

    /// This shard's contiguous slice of `n` rows: the shards of a count cover `0..n` in
    /// order, their sizes differing by at most one (empty when `n` < `count`).
    pub fn range(&self, n: usize) -> Range<usize> {
        let (i, c) = (self.index as usize, self.count.max(1) as usize);
        (n * i / c)..(n * (i + 1) / c)
    }

    /// The task name of this shard of `task` (`generate@1#2of4`, 1-based).
    pub fn task_name(&self, task: &str) -> String {
        format!("{task}{SHARD_SEP}{}of{}", self.index + 1, self.count)
    }
}

/// Separates a task's name from its shard in a shard's task name.
pub const SHARD_SEP: char = '#';

/// Rows of several shards in the order `order` lists their keys (the unsharded order);
/// an internal error names a key that `order` lacks or that two rows share.
pub fn in_order<T>(rows: Vec<T>, key: impl Fn(&T) -> i64, order: &[i64]) -> anyhow::Result<Vec<T>> {
    let position: std::collections::HashMap<i64, usize> =
        order.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let mut keyed = Vec::with_capacity(rows.len());
    for row in rows {
        let k = key(&row);
        let Some(&p) = position.get(&k) else {
            return Err(
                crate::internal_err!("a shard wrote row {k}, which the input lacks").into(),
            );
        };
        keyed.push((p, row));
    }
    keyed.sort_by_key(|(p, _)| *p);
    if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(crate::internal_err!("two shards wrote the same row").into());
    }
    Ok(keyed.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_rows_in_order() {
        for n in [0, 1, 3, 4, 7, 64] {
            for count in 1..=5 {
                let ranges: Vec<Range<usize>> = Shard::all(count).map(|s| s.range(n)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges.last().unwrap().end, n);
                assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
                let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            }
        }
    }

    #[test]
    fn rows_return_to_the_input_order() {
        let order = [5, 3, 9, 1];
        assert_eq!(in_order(vec![9, 1, 5, 3], |r| *r, &order).unwrap(), order);
        assert!(in_order(vec![9, 9], |r| *r, &order).is_err());
        assert!(in_order(vec![2], |r| *r, &order).is_err());
    }
}
