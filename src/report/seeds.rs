//! Several runs of one pipeline under different seeds, side by side: mean ± spread per arm and
//! iteration, and which differences are larger than the seed spread (`scir report --seeds`).
//!
//! Input: one [`Report`] per artifacts directory (each a run of the same pipeline with its own
//! `--seed`). Every difference is *paired* by seed: arms of one seed share M0 and every task
//! upstream of their first difference, so `scir − srlm` within a seed removes M0's variation.
//!
//! ```text
//! cell        mean ± sd over seeds (sample standard deviation; n = number of seeds with a value)
//! difference  d_s = x_s(a) − x_s(b) per seed s, reported as mean ± sd and every d_s
//! verdict     "larger than the seed spread" when every d_s has the same sign (none zero) and
//!             |mean d| > sd(d); otherwise "within the seed spread"
//! ```
//!
//! The rule is deliberately plain (3 seeds cannot carry a significance test); the per-seed
//! differences are printed so a reader can apply their own.

use std::fmt::Write as _;

use serde::Serialize;

use super::view::{Report, Row};
use crate::user_err;

/// The file `scir run --seeds` writes the combined report to, in the artifacts dir.
pub const SEEDS_FILE: &str = "seeds.md";

/// Metrics shown, in order (those present in every run).
pub const METRICS: &[&str] = &[
    "gold_sampled",
    "win_rate_sampled",
    "lc_win_rate_sampled",
    "sampled_grm_acc",
    "sampled_irm_acc",
    "sampled_rm_acc",
    "gold_greedy",
    "exact_greedy",
    "grm_acc",
    "irm_acc",
    "rm_acc",
    "consistency_rate",
    "label_acc",
    "label_longer",
    "judge_pair_acc",
    "length_sampled",
];

/// Mean, sample standard deviation and count of some values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
    pub n: usize,
}

impl Spread {
    /// `None` when `values` is empty; `sd` is 0 for one value.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = match n {
            1 => 0.0,
            _ => values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64,
        };
        Some(Spread {
            mean,
            sd: var.sqrt(),
            n,
        })
    }
}

/// One paired comparison of a metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// e.g. `scir − srlm @3` or `scir @3 − @0`.
    pub what: String,
    pub metric: String,
    pub spread: Spread,
    /// d_s per seed, in the order of the runs (None where a side lacks the value).
    pub per_seed: Vec<Option<f64>>,
    pub larger_than_spread: bool,
}

/// The combined view of several seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedReport {
    pub runs: Vec<String>,
    pub arms: Vec<String>,
    pub metrics: Vec<String>,
    /// (arm, iteration) → metric → spread over seeds.
    pub cells: Vec<Row<Spread>>,
    pub differences: Vec<Difference>,
}

type Key = (String, i32);

/// The value of `metric` for (arm, iteration) in one run.
fn value(report: &Report, key: &Key, metric: &str) -> Option<f64> {
    let row = report
        .rows
        .iter()
        .find(|r| r.arm == key.0 && r.iteration == key.1)?;
    row.values.get(metric).copied().flatten()
}

/// Combine `runs` (label, report); every run must have the same arms and iterations.
pub fn combine(runs: &[(String, Report)]) -> anyhow::Result<SeedReport> {
    let Some((first_label, first)) = runs.first() else {
        return Err(user_err!("scir report --seeds needs at least one artifacts directory").into());
    };
    let keys: Vec<Key> = first
        .rows
        .iter()
        .map(|r| (r.arm.clone(), r.iteration))
        .collect();
    for (label, report) in &runs[1..] {
        let other: Vec<Key> = report
            .rows
            .iter()
            .map(|r| (r.arm.clone(), r.iteration))
            .collect();
        if other != keys {
            return Err(user_err!(
                "{label} has other arms or iterations than {first_label}; --seeds compares runs \
                 of the same pipeline (run each with `scir run --seed N --artifacts DIR`)"
            )
            .into());
        }
    }
    let metrics: Vec<String> = METRICS
        .iter()
        .filter(|m| runs.iter().all(|(_, r)| r.metrics.iter().any(|x| x == *m)))
        .map(|m| m.to_string())
        .collect();
    let series = |key: &Key, metric: &str| -> Vec<Option<f64>> {
        runs.iter().map(|(_, r)| value(r, key, metric)).collect()
    };
    let cells = keys
        .iter()
        .map(|key| Row {
            arm: key.0.clone(),
            iteration: key.1,
            values: metrics
                .iter()
                .map(|m| {
                    let v: Vec<f64> = series(key, m).into_iter().flatten().collect();
                    (m.clone(), Spread::of(&v))
                })
                .collect(),
        })
        .collect();
    let differences = differences(first, &metrics, &series);
    Ok(SeedReport {
        runs: runs.iter().map(|(l, _)| l.clone()).collect(),
        arms: first.arms.clone(),
        metrics,
        cells,
        differences,
    })
}

/// With more arms than this, arm-vs-arm differences are taken against the reference arms
/// only: those of [`REFERENCE_ARMS`] present, else the first two.
const ALL_PAIRS_UP_TO: usize = 3;
/// The arms every other arm is compared with when there are many (SCIR, then its baseline).
const REFERENCE_ARMS: &[&str] = &["scir", "srlm"];

/// The metrics of the one-row-per-arm sweep table, and the two whose @last − @0 must both
/// be positive and larger than the seed spread for an arm to count as improving on M0.
const SWEEP_METRICS: &[&str] = &[
    "gold_sampled",
    "lc_win_rate_sampled",
    "win_rate_sampled",
    "gold_greedy",
    "length_sampled",
];
const IMPROVES_ON: &[&str] = &["gold_sampled", "lc_win_rate_sampled"];

/// Arm vs arm at the last iteration, and each arm's last iteration vs M0.
fn differences(
    first: &Report,
    metrics: &[String],
    series: &dyn Fn(&Key, &str) -> Vec<Option<f64>>,
) -> Vec<Difference> {
    let last = first.rows.iter().map(|r| r.iteration).max().unwrap_or(0);
    let mut pairs: Vec<(String, Key, Key)> = Vec::new();
    for (a, b) in arm_pairs(&first.arms) {
        let what = format!("{a} − {b} @{last}");
        pairs.push((what, (a.clone(), last), (b.clone(), last)));
    }
    for a in &first.arms {
        if last > 0 {
            let what = format!("{a} @{last} − @0");
            pairs.push((what, (a.clone(), last), (a.clone(), 0)));
        }
    }
    let mut out = Vec::new();
    for (what, x, y) in pairs {
        for m in metrics {
            let per_seed: Vec<Option<f64>> = series(&x, m)
                .into_iter()
                .zip(series(&y, m))
                .map(|(a, b)| Some(a? - b?))
                .collect();
            let d: Vec<f64> = per_seed.iter().flatten().copied().collect();
            let Some(spread) = Spread::of(&d) else {
                continue;
            };
            out.push(Difference {
                what: what.clone(),
                metric: m.clone(),
                larger_than_spread: larger_than_spread(&d, spread),
                spread,
                per_seed,
            });
        }
    }
    out
}

/// The arm pairs `(a, b)` compared as `a − b`: every pair (in arm order) up to
/// [`ALL_PAIRS_UP_TO`] arms; beyond, every arm against each reference arm.
fn arm_pairs(arms: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if arms.len() <= ALL_PAIRS_UP_TO {
        for (i, a) in arms.iter().enumerate() {
            out.extend(arms[i + 1..].iter().map(|b| (a.clone(), b.clone())));
        }
        return out;
    }
    let named: Vec<&String> = REFERENCE_ARMS
        .iter()
        .filter_map(|r| arms.iter().find(|a| a == r))
        .collect();
    let refs = if named.is_empty() {
        arms[..2].iter().collect()
    } else {
        named
    };
    for (i, r) in refs.iter().enumerate() {
        for a in arms.iter().filter(|a| !refs[..=i].contains(a)) {
            out.push((a.clone(), (*r).clone()));
        }
    }
    out
}

/// Every difference has the same sign (none zero) and |mean| exceeds the sd.
pub fn larger_than_spread(d: &[f64], s: Spread) -> bool {
    let same_sign = d.iter().all(|v| *v > 0.0) || d.iter().all(|v| *v < 0.0);
    d.len() >= 2 && same_sign && s.mean.abs() > s.sd
}

fn cell(s: Option<Spread>) -> String {
    match s {
        Some(s) => format!("{:.3} ± {:.3}", s.mean, s.sd),
        None => "-".into(),
    }
}

impl SeedReport {
    /// Markdown: one row per arm (its last iteration vs M0), the table of means ± sd, then
    /// the differences.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} seeds ({}); each cell: mean ± sample sd over seeds.\n",
            self.runs.len(),
            self.runs.join(", ")
        );
        self.sweep_table(&mut out);
        let _ = writeln!(out, "| arm | iter | {} |", self.metrics.join(" | "));
        let _ = writeln!(out, "|---|---:|{}", "---:|".repeat(self.metrics.len()));
        for row in &self.cells {
            let cells: Vec<String> = self.metrics.iter().map(|m| cell(row.values[m])).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                row.arm,
                row.iteration,
                cells.join(" | ")
            );
        }
        let _ = writeln!(
            out,
            "\nPaired differences (per seed, same M0). **Larger than the seed spread** = the \
             same sign on every seed and |mean| > sd.\n"
        );
        let _ = writeln!(
            out,
            "| difference | metric | mean ± sd | per seed | verdict |"
        );
        let _ = writeln!(out, "|---|---|---:|---|---|");
        for d in &self.differences {
            let per: Vec<String> = d
                .per_seed
                .iter()
                .map(|v| v.map_or("-".into(), |v| format!("{v:+.3}")))
                .collect();
            let verdict = if d.larger_than_spread {
                "**larger than the seed spread**"
            } else {
                "within the seed spread"
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:+.3} ± {:.3} | {} | {verdict} |",
                d.what,
                d.metric,
                d.spread.mean,
                d.spread.sd,
                per.join(", ")
            );
        }
        out
    }

    /// Each arm's last iteration − M0 on [`SWEEP_METRICS`] (mean ± sd over seeds, `*` when
    /// larger than the seed spread), and whether it improves on M0 ([`IMPROVES_ON`]).
    fn sweep_table(&self, out: &mut String) {
        let vs_m0 = |arm: &str, metric: &str| {
            self.differences.iter().find(|d| {
                d.metric == metric
                    && d.what.starts_with(&format!("{arm} @"))
                    && d.what.ends_with("− @0")
            })
        };
        let metrics: Vec<&str> = SWEEP_METRICS
            .iter()
            .copied()
            .filter(|m| self.metrics.iter().any(|x| x == m))
            .collect();
        if metrics.is_empty() || self.arms.iter().all(|a| vs_m0(a, metrics[0]).is_none()) {
            return;
        }
        let _ = writeln!(
            out,
            "Each arm, last iteration − M0 (paired by seed; `*`: larger than the seed spread). \
             **Improves** = {} both positive and larger than the spread.\n",
            IMPROVES_ON.join(" and ")
        );
        let _ = writeln!(out, "| arm | {} | improves on M0 |", metrics.join(" | "));
        let _ = writeln!(out, "|---|{}---|", "---:|".repeat(metrics.len()));
        for arm in &self.arms {
            let cells: Vec<String> = metrics
                .iter()
                .map(|m| match vs_m0(arm, m) {
                    Some(d) => {
                        let star = if d.larger_than_spread { "*" } else { "" };
                        format!("{:+.3} ± {:.3}{star}", d.spread.mean, d.spread.sd)
                    }
                    None => "-".into(),
                })
                .collect();
            let improves = IMPROVES_ON.iter().all(|m| {
                vs_m0(arm, m).is_some_and(|d| d.larger_than_spread && d.spread.mean > 0.0)
            });
            let verdict = if improves { "**yes**" } else { "no" };
            let _ = writeln!(out, "| {arm} | {} | {verdict} |", cells.join(" | "));
        }
        out.push('\n');
    }

    /// Write [`SeedReport::markdown`] to `<dir>/`[`SEEDS_FILE`] (atomically); its path.
    pub fn write(&self, dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
        let path = dir.join(SEEDS_FILE);
        super::markdown::write_atomic(&path, self.markdown().as_bytes())?;
        Ok(path)
    }

    /// Pretty JSON of the whole structure.
    pub fn json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_sample_sd() {
        let s = Spread::of(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.mean, s.sd, s.n), (2.0, 1.0, 3));
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[4.0]).unwrap().sd, 0.0);
    }

    #[test]
    fn larger_than_spread_needs_one_sign_and_a_mean_beyond_the_sd() {
        let check = |d: &[f64]| larger_than_spread(d, Spread::of(d).unwrap());
        assert!(check(&[0.05, 0.04, 0.06]));
        assert!(!check(&[0.05, -0.01, 0.06]));
        assert!(!check(&[0.01, 0.2, 0.001]));
        assert!(!check(&[0.05]));
        assert!(!check(&[0.0, 0.0, 0.0]));
    }

    #[test]
    fn many_arms_are_compared_with_scir_then_srlm() {
        let arms: Vec<String> = ["cream", "external-rm", "meta-rewarding", "scir", "srlm"]
            .map(String::from)
            .to_vec();
        let pairs: Vec<String> = arm_pairs(&arms)
            .into_iter()
            .map(|(a, b)| format!("{a} − {b}"))
            .collect();
        assert_eq!(
            pairs,
            [
                "cream − scir",
                "external-rm − scir",
                "meta-rewarding − scir",
                "srlm − scir",
                "cream − srlm",
                "external-rm − srlm",
                "meta-rewarding − srlm",
            ]
        );
        let few: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(arm_pairs(&few).len(), 3);
    }
}
