//! The Slurm executor: each task that must be computed becomes one batch job running
//! `scir task` for exactly that task ([`super::remote`]).
//!
//! ```text
//! <run dir>/slurm/<task>.<arm>.sh         the job script (sbatch options as #SBATCH lines)
//! <run dir>/slurm/<task>.<arm>.<job>.out  the job's stdout and stderr
//! <run dir>/slurm/<task>.<arm>.json       what `scir task` reports (ran, hit, or the error)
//! ```
//!
//! Submission is `sbatch --parsable`; the run polls `squeue --me` until the job is gone,
//! then reads the job's report. A job that ends without one (cancelled, timed out, its node
//! lost) is a failed task whose reason names the job id, its Slurm state (`scontrol show
//! job`, else `sacct`) and its log. The job takes the task key's lock itself and commits
//! atomically, so a killed job leaves nothing half-visible and two runs compute a key once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::engine::config::Resources;
use crate::user_err;

/// How tasks become Slurm jobs.
#[derive(Debug, Clone)]
pub struct SlurmConfig {
    /// The `scir` binary jobs run (on a cluster: a path every node sees).
    pub scir: PathBuf,
    /// How often `squeue` is asked.
    pub poll: Duration,
    /// sbatch options for every job (before a stage's `resources:`).
    pub sbatch_args: Vec<String>,
}

/// The default interval between two `squeue` calls.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);

/// Write the job script `<stem>.sh` (job `name` running `command`, with `resources`) and
/// submit it; the job id and its log's path.
pub fn submit(
    cfg: &SlurmConfig,
    name: &str,
    stem: &Path,
    command: &[String],
    resources: &Resources,
) -> anyhow::Result<(String, PathBuf)> {
    if let Some(dir) = stem.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let script = suffixed(stem, "sh");
    let report = report_path(stem);
    let _ = std::fs::remove_file(&report);
    let out = PathBuf::from(format!("{}.%j.out", stem.display()));
    let mut text = String::from("#!/bin/sh\n# Written by scir run --executor slurm.\n");
    let options = [
        format!("--job-name={}", name),
        format!("--output={}", out.display()),
    ];
    for opt in options
        .iter()
        .chain(&cfg.sbatch_args)
        .chain(&resources.sbatch_args())
    {
        text.push_str(&format!("#SBATCH {opt}\n"));
    }
    let words: Vec<String> = command.iter().map(|w| quote(w)).collect();
    text.push_str(&format!("exec {}\n", words.join(" ")));
    std::fs::write(&script, text).with_context(|| format!("writing {}", script.display()))?;
    let output = Command::new("sbatch")
        .arg("--parsable")
        .arg(&script)
        .output()
        .map_err(|e| not_found("sbatch", e))?;
    if !output.status.success() {
        anyhow::bail!(
            "sbatch refused {}: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id = stdout
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
        anyhow::bail!(
            "sbatch printed no job id for {}: {stdout:?}",
            script.display()
        );
    }
    let log = PathBuf::from(out.display().to_string().replace("%j", &id));
    Ok((id, log))
}

/// Which of `ids` Slurm still lists (pending, running or completing).
pub fn listed(ids: &[&str]) -> anyhow::Result<BTreeSet<String>> {
    let output = Command::new("squeue")
        .args(["--me", "-h", "-o", "%i"])
        .output()
        .map_err(|e| not_found("squeue", e))?;
    if !output.status.success() {
        anyhow::bail!(
            "squeue failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let all: BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    Ok(ids
        .iter()
        .filter(|id| all.contains(**id))
        .map(|id| id.to_string())
        .collect())
}

/// How a job that left no report ended (`CANCELLED, exit 0:15`), as far as Slurm knows.
pub fn end_state(id: &str) -> String {
    let scontrol = Command::new("scontrol")
        .args(["show", "job", "-o", id])
        .output();
    if let Ok(out) = scontrol
        && out.status.success()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
        };
        if let Some(state) = field("JobState") {
            return format!("{state}, exit {}", field("ExitCode").unwrap_or_default());
        }
    }
    let sacct = Command::new("sacct")
        .args(["-n", "-X", "-P", "-o", "State,ExitCode", "-j", id])
        .output();
    match sacct {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout)
                .trim()
                .replace('|', ", exit ");
            if text.is_empty() {
                "unknown".into()
            } else {
                text
            }
        }
        _ => "unknown (neither scontrol nor sacct knows the job)".into(),
    }
}

/// Cancel `ids` (errors are reported, not returned: the run is stopping anyway).
pub fn cancel(ids: &[&str]) {
    if ids.is_empty() {
        return;
    }
    match Command::new("scancel").args(ids).status() {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("scancel {} exited with {s}", ids.join(" ")),
        Err(e) => eprintln!("scancel {}: {e}", ids.join(" ")),
    }
}

/// A job's report, waiting `grace` for it to appear (a shared filesystem may show it late).
pub fn read_report(report: &Path, grace: Duration) -> Option<String> {
    let deadline = std::time::Instant::now() + grace;
    loop {
        if let Ok(text) = std::fs::read_to_string(report) {
            return Some(text);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where `scir task` writes the report of the job with files at `stem`.
pub fn report_path(stem: &Path) -> PathBuf {
    suffixed(stem, "json")
}

/// `stem` with `.ext` appended (a task name may contain dots).
pub fn suffixed(stem: &Path, ext: &str) -> PathBuf {
    PathBuf::from(format!("{}.{ext}", stem.display()))
}

/// `word` single-quoted for /bin/sh.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn not_found(tool: &str, e: std::io::Error) -> anyhow::Error {
    user_err!(
        "cannot run {tool}: {e}\n--executor slurm needs Slurm's client commands (sbatch, squeue, \
         scancel, scontrol) on PATH; scripts/slurm-local.sh starts a one-node cluster here."
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_sh() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("generate@1#2of4"), "'generate@1#2of4'");
    }
}
