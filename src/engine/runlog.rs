//! Run records: one JSON file per `scir run`.
//!
//! ```text
//! artifacts/.scir/runs/<run-id>/run.json      the record (written at the end)
//! artifacts/.scir/runs/<run-id>/run.lock      held while the run lives
//! artifacts/.scir/runs/<run-id>/<task>.<arm>.log   what each task logged
//! ```
//!
//! Run ids sort by start time: `20261127T081500Z-<pid>` (plus `-<n>` when one
//! process starts several runs in one second). The field names are a public
//! interface: `scir sql` exposes them as tables `scir_runs` and `scir_tasks`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::layout::RUN_FILE;
use serde::{Deserialize, Serialize};

/// The record of one `scir run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub finished_at: String,
    pub argv: Vec<String>,
    pub pipeline: String,
    pub pipeline_digest: String,
    pub status: RunStatus,
    pub tasks: Vec<TaskRecord>,
}

/// One task of one arm in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task: String,
    pub stage: String,
    pub iteration: u32,
    pub arm: String,
    pub key: String,
    pub status: TaskStatus,
    pub reason: String,
    pub seconds: f64,
    pub rows: BTreeMap<String, u64>,
    pub log: String,
    /// A failure caused by the user's input (`scir run` then exits 2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub user_error: bool,
}

/// How a run ended (`ok` | `failed` in the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Every task is fresh.
    Ok,
    /// A task failed (the others that could run did).
    Failed,
}

/// What happened to one task in a run (`ran` | `hit` | `failed` | `skipped` in the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Computed and committed by this run.
    Ran,
    /// Its object already existed (or a concurrent run committed it).
    Hit,
    /// Its stage returned an error; nothing was committed.
    Failed,
    /// Not run: an upstream task failed.
    Skipped,
}

impl RunStatus {
    /// The name in run records and `scir_runs`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
        }
    }
}

impl TaskStatus {
    /// Every status, in the order summaries list them.
    pub const ALL: [TaskStatus; 4] = [
        TaskStatus::Ran,
        TaskStatus::Hit,
        TaskStatus::Failed,
        TaskStatus::Skipped,
    ];
    /// The name in run records and `scir_tasks`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Ran => "ran",
            TaskStatus::Hit => "hit",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Now as RFC 3339 UTC with seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A run id for a run starting at `started_at` (RFC 3339): `YYYYMMDDTHHMMSSZ-<pid>`.
pub fn base_run_id(started_at: &str) -> String {
    let compact: String = started_at
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{compact}-{}", std::process::id())
}

/// Create a fresh run directory under `runs_dir`; returns (run id, its dir).
pub fn create_run_dir(runs_dir: &Path, started_at: &str) -> anyhow::Result<(String, PathBuf)> {
    let unwritable = |e: std::io::Error| {
        anyhow::Error::from(crate::user_err!(
            "cannot create a run record in {}: {e}\nThe artifacts directory must be writable \
             (check its permissions, mount and free space), or pass --artifacts DIR.",
            runs_dir.display()
        ))
    };
    std::fs::create_dir_all(runs_dir).map_err(unwritable)?;
    let base = base_run_id(started_at);
    for n in 0u32.. {
        let id = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = runs_dir.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(unwritable(e)),
        }
    }
    unreachable!("u32 run counter exhausted")
}

/// Write `record` as `<dir>/run.json` (temp file, then rename).
pub fn write(dir: &Path, record: &RunRecord) -> anyhow::Result<()> {
    let tmp = dir.join(format!("{RUN_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(record)? + "\n")?;
    std::fs::rename(&tmp, dir.join(RUN_FILE))?;
    Ok(())
}

/// Every readable run record under `runs_dir`, oldest first.
pub fn list(runs_dir: &Path) -> anyhow::Result<Vec<RunRecord>> {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return Ok(Vec::new());
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    Ok(ids
        .iter()
        .filter_map(|id| read(runs_dir, id).ok())
        .collect())
}

/// The record of run `id`.
pub fn read(runs_dir: &Path, id: &str) -> anyhow::Result<RunRecord> {
    let path = runs_dir.join(id).join(RUN_FILE);
    let text = std::fs::read_to_string(&path)?;
    Ok(serde_json::from_str(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_and_do_not_collide() {
        assert!(base_run_id("2026-11-27T08:15:00Z").starts_with("20261127T081500Z-"));
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = create_run_dir(dir.path(), "2026-11-27T08:15:00Z").unwrap();
        let (b, _) = create_run_dir(dir.path(), "2026-11-27T08:15:00Z").unwrap();
        assert_ne!(a, b);
        assert!(a < b);
    }
}
