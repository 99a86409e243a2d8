//! Shards of a generation for the scorers (score-irm, score-grm): a shard takes a contiguous
//! slice of the prompts (in id order) with their responses and pairs, and a merge puts each
//! table's rows back in the unsharded order ([`crate::engine::shard`]).

use std::collections::BTreeMap;

use crate::engine::shard::in_order;
use crate::engine::stage::TaskContext;
use crate::table::Table;
use crate::tables::pairs::PairRow;
use crate::tables::responses::ResponseRow;

/// Keep only this task's shard of `responses` and `pairs` (everything when unsharded).
pub fn keep_shard(
    ctx: &TaskContext,
    responses: &mut BTreeMap<i64, ResponseRow>,
    pairs: &mut Vec<PairRow>,
) {
    if ctx.shard.is_none() {
        return;
    }
    let mut prompts: Vec<i64> = responses.values().map(|r| r.prompt_id).collect();
    prompts.extend(pairs.iter().map(|p| p.prompt_id));
    prompts.sort_unstable();
    prompts.dedup();
    let mine: std::collections::BTreeSet<i64> = prompts[ctx.shard_range(prompts.len())]
        .iter()
        .copied()
        .collect();
    responses.retain(|_, r| mine.contains(&r.prompt_id));
    pairs.retain(|p| mine.contains(&p.prompt_id));
}

/// The pair ids of the `generation` input in its order (the unsharded order of per-pair rows).
pub fn pair_order(ctx: &TaskContext) -> anyhow::Result<Vec<i64>> {
    let pairs: Vec<PairRow> = ctx.input("generation")?.rows()?;
    Ok(pairs.iter().map(|p| p.pair_id).collect())
}

/// The shards' rows of table `T`, in the order `order` gives their `key`.
pub fn merged<T: Table>(
    ctx: &TaskContext,
    key: impl Fn(&T) -> i64,
    order: &[i64],
) -> anyhow::Result<Vec<T>> {
    in_order(ctx.part_rows()?, key, order)
}
