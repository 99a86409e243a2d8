//! `scir export --preferences`: what each arm trained on, as a TRL preference dataset.
//!
//! ```text
//! OUT/<arm>/iter-<k>.parquet   one split per iteration with pairs: prompt, chosen, rejected (TRL's
//! OUT/<arm>/iter-<k>.jsonl     standard form) + iteration, pair_id, prompt_id, p_irm,
//!                              p_grm, consistent, label, forced
//! ```
//!
//! The rows are `consistency-filter@k`'s selected pairs that carry a label (`filter_pairs`),
//! joined with `generate@k`'s texts (`responses`) in the public view, so the export is what
//! `scir sql` shows. `chosen` is the labelled response. Under SCIR's `dynamic` mode the
//! label is the IRM/GRM agreement at Mt before the step; train re-selects per step with
//! the current weights (`train_metrics`' `consistency/selected_frac`), so a dynamic arm's
//! export is the set it could train on. `datasets.load_dataset("parquet", data_files=
//! {"iter_1": …})` reads the files; `scripts/check_preferences.py` checks that TRL's
//! `DPOTrainer` takes a step on them.

use std::path::{Path, PathBuf};

use super::{iterations, literal, write_parquet_atomic};
use crate::table::Table;

crate::table! {
    /// One trained pair: TRL's `prompt`, `chosen`, `rejected`, then scir's columns.
    pub struct TrainedPairRow in "trained_pairs" {
        prompt: String,
        chosen: String,
        rejected: String,
        pair_id: i64,
        prompt_id: i64,
        p_irm: f64,
        p_grm: f64,
        consistent: bool,
        /// `y1` | `y2`: which of the generated pair is `chosen`.
        label: String,
        forced: bool,
    }
}

/// The selected, labelled pairs of `arm` with their texts, by iteration and pair id.
fn query(arm: &str) -> String {
    let arm = literal(arm);
    format!(
        "SELECT f.iteration, r1.prompt AS prompt, \
           CASE WHEN f.label = 'y1' THEN r1.text ELSE r2.text END AS chosen, \
           CASE WHEN f.label = 'y1' THEN r2.text ELSE r1.text END AS rejected, \
           f.pair_id, f.prompt_id, f.p_irm, f.p_grm, f.consistent, f.label, f.forced \
         FROM filter_pairs f \
         JOIN responses r1 ON r1.arm = f.arm AND r1.iteration = f.iteration \
           AND r1.response_id = f.response_id_1 \
         JOIN responses r2 ON r2.arm = f.arm AND r2.iteration = f.iteration \
           AND r2.response_id = f.response_id_2 \
         WHERE f.arm = {arm} AND f.selected AND f.label IS NOT NULL \
         ORDER BY f.iteration, f.pair_id"
    )
}

/// The table whose selected pairs are exported.
const TABLE: &str = "filter_pairs";

/// Per iteration the filter ran for `arm`, its trained pairs (possibly none).
pub fn trained_pairs(
    artifacts: &Path,
    arm: &str,
) -> anyhow::Result<Vec<(i32, Vec<TrainedPairRow>)>> {
    let mut out: Vec<(i32, Vec<TrainedPairRow>)> = iterations(artifacts, TABLE, arm)?
        .into_iter()
        .map(|k| (k, Vec::new()))
        .collect();
    for (k, row) in crate::sql::query_rows::<TrainedPairRow>(artifacts, &query(arm))? {
        let Some((_, rows)) = out.iter_mut().find(|(x, _)| *x == k) else {
            anyhow::bail!(crate::internal_err!("iteration {k} of {arm} has no filter"));
        };
        rows.push(row);
    }
    Ok(out)
}

/// The JSON Lines text of `rows` at iteration `k` (the Parquet file's columns).
pub fn jsonl(k: i32, rows: &[TrainedPairRow]) -> anyhow::Result<String> {
    let mut s = String::new();
    for r in rows {
        let line = serde_json::json!({
            "prompt": r.prompt,
            "chosen": r.chosen,
            "rejected": r.rejected,
            "iteration": k,
            "pair_id": r.pair_id,
            "prompt_id": r.prompt_id,
            "p_irm": r.p_irm,
            "p_grm": r.p_grm,
            "consistent": r.consistent,
            "label": r.label,
            "forced": r.forced,
        });
        s.push_str(&serde_json::to_string(&line)?);
        s.push('\n');
    }
    Ok(s)
}

/// Write every arm's (or `only`'s) trained pairs under `out`; the files written.
pub fn export(artifacts: &Path, only: Option<&str>, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for arm in &super::arms(artifacts, TABLE, only)? {
        for (k, rows) in trained_pairs(artifacts, arm)? {
            if rows.is_empty() {
                // `datasets` refuses an empty split: say so instead of writing one.
                eprintln!("{arm} iteration {k}: no selected, labelled pair (no file)");
                continue;
            }
            let base = out.join(arm).join(format!("iter-{k}"));
            let jsonl_path = base.with_extension("jsonl");
            super::write_atomic(&jsonl_path, &jsonl(k, &rows)?)?;
            let parquet_path = base.with_extension("parquet");
            let k = u32::try_from(k)?;
            write_parquet_atomic(&parquet_path, &TrainedPairRow::batch(k, rows)?)?;
            written.extend([parquet_path, jsonl_path]);
        }
    }
    Ok(written)
}
