//! `artifacts/report/`: `report.md` and its PNG charts, rebuilt from the
//! public `eval` table.
//!
//! ```text
//! artifacts/report/report.md            summary table, charts, every metric per arm
//! artifacts/report/index.html           the same summary and charts in one self-contained
//!                                       page, with a pair browser ([`super::html`])
//! artifacts/report/gold.png             gold score (sampled and greedy) per iteration
//! artifacts/report/win_rate.png         gold win rate vs M0
//! artifacts/report/judge_accuracy.png   IRM and GRM accuracy on gold pairs
//! artifacts/report/consistency.png      IRM/GRM consistency rate (gold pairs; own and trained
//!                                       pairs when eval-labels ran)
//! artifacts/report/labels.png           label accuracy on own pairs (only when eval-labels ran)
//! artifacts/report/length_bias.png      how often gold, labels, IRM and GRM prefer the longer
//!                                       response (only when eval-labels ran)
//! ```
//!
//! Each file is written under a temporary name and renamed into place, so a
//! reader sees the old file or the new one. No timestamps: the same table
//! gives the same bytes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::plot::{Series, line_chart};
use super::view::Report;
use crate::engine::layout::Layout;

/// The markdown file inside it.
pub const REPORT_FILE: &str = "report.md";

/// One chart: file, title, y label, y max, metrics drawn (one line per arm each).
type Chart = (
    &'static str,
    &'static str,
    &'static str,
    f64,
    &'static [&'static str],
);

/// The charts, in report order.
pub const CHARTS: &[Chart] = &[
    (
        "gold.png",
        "gold score on held-out prompts",
        "mean gold score",
        1.0,
        &["gold_sampled", "gold_greedy"],
    ),
    (
        "win_rate.png",
        "gold win rate vs M0 (ties count 1/2)",
        "win rate",
        1.0,
        &["win_rate_sampled"],
    ),
    (
        "judge_accuracy.png",
        "reward-model accuracy on held-out gold pairs",
        "accuracy",
        1.0,
        &["irm_acc", "grm_acc", "rm_acc"],
    ),
    (
        "consistency.png",
        "IRM/GRM consistency rate on held-out gold pairs",
        "fraction consistent",
        1.0,
        &[
            "consistency_rate",
            "own_consistency_rate",
            "trained_consistency_after",
        ],
    ),
    (
        "labels.png",
        "accuracy of the training labels and rewards on the arm's own pairs",
        "accuracy",
        1.0,
        &["label_acc", "own_irm_acc", "own_grm_acc"],
    ),
    (
        "length_bias.png",
        "how often each preference picks the longer of two own responses",
        "fraction longer",
        1.0,
        &[
            "own_gold_longer",
            "label_longer",
            "own_irm_longer",
            "own_grm_longer",
        ],
    ),
];

/// After a run: rebuild `artifacts/report/` when the artifacts have an
/// `eval` table; `None` (and nothing written) when they do not.
pub fn refresh(artifacts: &Path) -> anyhow::Result<Option<PathBuf>> {
    let has_eval = crate::sql::table_dirs(artifacts)?
        .iter()
        .any(|(name, _)| name == crate::eval::tables::EVAL);
    if !has_eval {
        return Ok(None);
    }
    let report = super::view::load(artifacts)?;
    write_report(artifacts, &report).map(Some)
}

/// Rebuild `artifacts/report/` from `report`; returns the path of report.md.
pub fn write_report(artifacts: &Path, report: &Report) -> anyhow::Result<PathBuf> {
    let dir = Layout::new(artifacts).report_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut charts = Vec::new();
    for (file, title, y_label, y_max, metrics) in CHARTS {
        let series = chart_series(report, metrics);
        if series.is_empty() {
            // No data for this chart (e.g. no eval-labels stage): no file.
            let _ = std::fs::remove_file(dir.join(file));
            continue;
        }
        let png = line_chart(title, y_label, *y_max, &series)?;
        write_atomic(&dir.join(file), &png)?;
        charts.push((*title, png));
    }
    let pairs = super::html::pairs(artifacts)?;
    let page = super::html::page(report, &charts, &pairs)?;
    write_atomic(&dir.join(super::html::PAGE_FILE), page.as_bytes())?;
    let path = dir.join(REPORT_FILE);
    write_atomic(&path, markdown(report).as_bytes())?;
    Ok(path)
}

fn chart_series(report: &Report, metrics: &[&str]) -> Vec<Series> {
    let mut out = Vec::new();
    for arm in &report.arms {
        for m in metrics {
            let points = report.series(arm, m);
            if points.is_empty() {
                continue;
            }
            let label = if metrics.len() == 1 {
                arm.clone()
            } else {
                format!("{arm} {m}")
            };
            out.push(Series { label, points });
        }
    }
    out
}

/// Write `bytes` to a hidden temp name beside `path`, then rename it into place.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn md_table(grid: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (i, line) in grid.iter().enumerate() {
        let _ = writeln!(out, "| {} |", line.join(" | "));
        if i == 0 {
            let _ = writeln!(out, "|{}", "---|".repeat(line.len()));
        }
    }
    out
}

/// The markdown text of the report.
pub fn markdown(report: &Report) -> String {
    let mut s = String::from("# scir report\n\n");
    let _ = writeln!(
        s,
        "Built by `scir report` from the public `eval` table (`artifacts/tables/eval/`); \
         iteration 0 is M0, iteration k the model after k SCIR iterations. Arms: {}.\n\
         Query it yourself: `scir sql \"SELECT arm, iteration, value FROM eval WHERE metric = \
         'gold_sampled' ORDER BY 1, 2\"`.\n",
        report.arms.join(", ")
    );
    s.push_str("## Summary\n\n");
    s.push_str(&md_table(&report.grid()));
    s.push_str("\n## Charts\n\n");
    for (file, title, _, _, metrics) in CHARTS {
        if chart_series(report, metrics).is_empty() {
            continue;
        }
        let _ = writeln!(s, "### {title}\n\n![{title}]({file})\n");
    }
    s.push_str("## Every metric\n\n");
    for arm in &report.arms {
        let rows: Vec<_> = report.rows.iter().filter(|r| &r.arm == arm).collect();
        let mut grid = vec![
            std::iter::once("metric".to_string())
                .chain(rows.iter().map(|r| format!("iter {}", r.iteration)))
                .collect::<Vec<_>>(),
        ];
        for m in &report.metrics {
            let cells = rows
                .iter()
                .map(|r| match r.values.get(m).copied().flatten() {
                    Some(v) => format!("{v:.4}"),
                    None => "-".into(),
                });
            grid.push(std::iter::once(m.clone()).chain(cells).collect());
        }
        let _ = writeln!(s, "### arm `{arm}`\n\n{}", md_table(&grid));
    }
    s.push_str(
        "Metric definitions: see `scir report --help` and the module docs of \
         `src/report/mod.rs`. `-` means nothing to average (or a metric the arm lacks).\n",
    );
    s
}
