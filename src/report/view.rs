//! The public `eval` table (and `eval_labels`, when present) as a [`Report`]: one row per (arm, iteration),
//! every metric as a column; rendered as an aligned text table or JSON.
//!
//! JSON shape (`scir report --json`):
//!
//! ```text
//! { "arms": ["scir", "srlm"], "metrics": ["consistency_rate", …],   (sorted)
//!   "summary": ["gold_sampled", …],                                   (the text table's columns)
//!   "rows": [ { "arm": "scir", "iteration": 0,
//!               "values": { "gold_sampled": 0.84, "irm_acc": null, … } }, … ] }
//! ```
//!
//! `null` stands for NaN (nothing to average) and for a metric an arm lacks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use arrow::array::{Array, Float64Array, Int32Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use serde::Serialize;

use crate::eval::tables::{EVAL, EVAL_LABELS};
use crate::user_err;

/// The text table's columns, in order (present ones only are shown).
pub const SUMMARY: &[&str] = &[
    "sampled_grm_acc",
    "sampled_irm_acc",
    "sampled_rm_acc",
    "gold_sampled",
    "win_rate_sampled",
    "lc_win_rate_sampled",
    "gold_greedy",
    "exact_sampled",
    "length_sampled",
    "irm_acc",
    "grm_acc",
    "rm_acc",
    "consistency_rate",
    "own_consistency_rate",
    "label_acc",
    "label_longer",
];

/// Every eval metric of every arm and iteration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub arms: Vec<String>,
    pub metrics: Vec<String>,
    pub summary: Vec<String>,
    pub rows: Vec<Row>,
}

/// One arm at one iteration: metric → value (a number here; a spread over seeds in
/// [`super::seeds::SeedReport`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row<V = f64> {
    pub arm: String,
    pub iteration: i32,
    pub values: BTreeMap<String, Option<V>>,
}

const COLUMNS: &str = "SELECT arm, iteration, metric, value FROM";

/// Read the public `eval` table of `artifacts`.
pub fn load(artifacts: &Path) -> anyhow::Result<Report> {
    let names: Vec<String> = crate::sql::table_dirs(artifacts)?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let has_eval = names.iter().any(|n| n == EVAL);
    if !has_eval {
        return Err(user_err!(
            "no `{EVAL}` table under {}; run a pipeline with an eval stage first (`scir run`), \
             or pass --artifacts DIR",
            artifacts.display()
        )
        .into());
    }
    let mut query = format!("{COLUMNS} {EVAL}");
    if names.iter().any(|n| n == EVAL_LABELS) {
        query = format!("{query} UNION ALL {COLUMNS} {EVAL_LABELS}");
    }
    let query = format!("SELECT * FROM ({query}) ORDER BY arm, iteration, metric");
    let (batches, _warnings) = crate::sql::query(artifacts, &query)?;
    let mut cells: BTreeMap<(String, i32), BTreeMap<String, Option<f64>>> = BTreeMap::new();
    let mut metrics = BTreeSet::new();
    for b in &batches {
        // DataFusion may hand strings back as Utf8View and numbers widened:
        // cast every column to the type read here.
        let types = [
            DataType::Utf8,
            DataType::Int32,
            DataType::Utf8,
            DataType::Float64,
        ];
        let cols: Vec<_> = types
            .iter()
            .enumerate()
            .map(|(i, t)| cast(b.column(i), t))
            .collect::<Result<_, _>>()?;
        let col = |i: usize| cols[i].as_any();
        let (Some(arm), Some(iter), Some(metric), Some(value)) = (
            col(0).downcast_ref::<StringArray>(),
            col(1).downcast_ref::<Int32Array>(),
            col(2).downcast_ref::<StringArray>(),
            col(3).downcast_ref::<Float64Array>(),
        ) else {
            anyhow::bail!("the `{EVAL}` table does not have eval's columns; rerun eval");
        };
        for i in 0..b.num_rows() {
            let v = value.value(i);
            let v = (value.is_valid(i) && v.is_finite()).then_some(v);
            metrics.insert(metric.value(i).to_string());
            cells
                .entry((arm.value(i).to_string(), iter.value(i)))
                .or_default()
                .insert(metric.value(i).to_string(), v);
        }
    }
    let arms: BTreeSet<String> = cells.keys().map(|(a, _)| a.clone()).collect();
    let summary = SUMMARY
        .iter()
        .filter(|m| metrics.contains(**m))
        .map(|m| m.to_string())
        .collect();
    Ok(Report {
        arms: arms.into_iter().collect(),
        metrics: metrics.into_iter().collect(),
        summary,
        rows: cells
            .into_iter()
            .map(|((arm, iteration), values)| Row {
                arm,
                iteration,
                values,
            })
            .collect(),
    })
}

impl Report {
    /// The value of `metric` per iteration for `arm`, NaN and missing left out.
    pub fn series(&self, arm: &str, metric: &str) -> Vec<(i32, f64)> {
        self.rows
            .iter()
            .filter(|r| r.arm == arm)
            .filter_map(|r| Some((r.iteration, (*r.values.get(metric)?)?)))
            .collect()
    }

    /// The summary columns as `(header, cells)` rows, header first.
    pub fn grid(&self) -> Vec<Vec<String>> {
        let mut out = vec![
            ["arm", "iter"]
                .iter()
                .map(|s| s.to_string())
                .chain(self.summary.iter().cloned())
                .collect::<Vec<_>>(),
        ];
        for r in &self.rows {
            let mut line = vec![r.arm.clone(), r.iteration.to_string()];
            for m in &self.summary {
                line.push(match r.values.get(m).copied().flatten() {
                    Some(v) => format!("{v:.3}"),
                    None => "-".into(),
                });
            }
            out.push(line);
        }
        out
    }

    /// An aligned text table of the summary columns.
    pub fn text(&self) -> String {
        let grid = self.grid();
        let widths: Vec<usize> = (0..grid[0].len())
            .map(|c| grid.iter().map(|l| l[c].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for line in &grid {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (s, w))| match c {
                    0 => format!("{s:<w$}"),
                    _ => format!("{s:>w$}"),
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        out
    }

    /// Pretty JSON (see the module docs).
    pub fn json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }
}
