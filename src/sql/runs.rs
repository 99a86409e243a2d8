//! Run records as the SQL tables `scir_runs` and `scir_tasks`.
//!
//! Source: `<artifacts>/.scir/runs/<run_id>/run.json`, written by the engine:
//! `{"run_id", "started_at", "finished_at", "argv": [..], "pipeline",
//! "pipeline_digest", "status", "tasks": [{"task", "stage", "iteration", "arm",
//! "key", "status", "reason", "seconds", "rows": {table: n}, "log"}]}`.
//! Parsing is lenient (unknown fields are ignored, missing ones become NULL)
//! because the files are machine-written and may gain fields; a record that
//! does not parse at all is skipped with a warning rather than breaking every
//! query.
//!
//! Shapes (rows ordered by run directory name, tasks in file order):
//!
//! ```text
//! scir_runs:  run_id, started_at, finished_at (timestamps, UTC), seconds,
//!             argv (space-joined), pipeline, pipeline_digest, status,
//!             tasks, ran, hit, failed, skipped (task counts by status)
//! scir_tasks: run_id, task, stage, iteration, arm, key, status, reason,
//!             seconds, rows (total rows over all output tables),
//!             rows_json (the per-table counts as a JSON object), log
//! ```

use crate::engine::layout::{self, Layout};
use crate::engine::runlog::TaskStatus;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

/// Time zone of the timestamp columns.
const UTC: &str = "+00:00";

/// One run record (only the fields scir sql shows).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RunRecord {
    pub run_id: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub argv: Vec<String>,
    pub pipeline: Option<String>,
    pub pipeline_digest: Option<String>,
    pub status: Option<String>,
    pub tasks: Vec<TaskRecord>,
}

/// One task of a run record.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TaskRecord {
    pub task: Option<String>,
    pub stage: Option<String>,
    pub iteration: Option<i32>,
    pub arm: Option<String>,
    pub key: Option<String>,
    pub status: Option<String>,
    pub reason: Option<String>,
    pub seconds: Option<f64>,
    pub rows: Option<BTreeMap<String, i64>>,
    pub log: Option<String>,
}

/// Read every `run.json` under `<artifacts>/.scir/runs`, sorted by directory
/// name. Returns the records and one warning per unreadable record.
pub fn load(artifacts: &Path) -> anyhow::Result<(Vec<RunRecord>, Vec<String>)> {
    let dir = Layout::new(artifacts).runs_dir();
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    if !dir.is_dir() {
        return Ok((records, warnings));
    }
    let mut run_dirs: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {}", dir.display()))?
        .into_iter()
        .map(|e| e.path())
        .filter(|p| p.join(layout::RUN_FILE).is_file())
        .collect();
    run_dirs.sort();
    for run_dir in run_dirs {
        let file = run_dir.join(layout::RUN_FILE);
        let parsed = std::fs::read(&file)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(serde_json::from_slice::<RunRecord>(&bytes)?));
        match parsed {
            Ok(mut record) => {
                if record.run_id.is_none() {
                    record.run_id = run_dir.file_name().map(|n| n.to_string_lossy().into());
                }
                records.push(record);
            }
            Err(err) => warnings.push(format!("skipping run record {}: {err}", file.display())),
        }
    }
    Ok((records, warnings))
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn timestamp(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        true,
    )
}

/// Schema of `scir_runs`.
pub fn runs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("run_id"),
        timestamp("started_at"),
        timestamp("finished_at"),
        Field::new("seconds", DataType::Float64, true),
        utf8("argv"),
        utf8("pipeline"),
        utf8("pipeline_digest"),
        utf8("status"),
        Field::new("tasks", DataType::Int64, false),
        Field::new("ran", DataType::Int64, false),
        Field::new("hit", DataType::Int64, false),
        Field::new("failed", DataType::Int64, false),
        Field::new("skipped", DataType::Int64, false),
    ]))
}

/// Schema of `scir_tasks`.
pub fn tasks_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("run_id"),
        utf8("task"),
        utf8("stage"),
        Field::new("iteration", DataType::Int32, true),
        utf8("arm"),
        utf8("key"),
        utf8("status"),
        utf8("reason"),
        Field::new("seconds", DataType::Float64, true),
        Field::new("rows", DataType::Int64, true),
        utf8("rows_json"),
        utf8("log"),
    ]))
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

/// RFC 3339 strings to UTC timestamps; unparsable values become NULL.
fn timestamps<'a>(values: impl Iterator<Item = Option<&'a str>>) -> anyhow::Result<ArrayRef> {
    let target = DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()));
    Ok(cast(&strings(values), &target)?)
}

fn count_status(run: &RunRecord, status: TaskStatus) -> i64 {
    let n = run
        .tasks
        .iter()
        .filter(|t| t.status.as_deref() == Some(status.as_str()))
        .count();
    n as i64
}

/// The `scir_runs` batch.
pub fn runs_batch(runs: &[RunRecord]) -> anyhow::Result<RecordBatch> {
    let started = timestamps(runs.iter().map(|r| r.started_at.as_deref()))?;
    let finished = timestamps(runs.iter().map(|r| r.finished_at.as_deref()))?;
    let seconds = seconds_between(&started, &finished)?;
    let counts = |status: TaskStatus| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            runs.iter().map(|r| count_status(r, status)),
        ))
    };
    let argv: Vec<String> = runs.iter().map(|r| r.argv.join(" ")).collect();
    let columns: Vec<ArrayRef> = vec![
        strings(runs.iter().map(|r| r.run_id.as_deref())),
        started,
        finished,
        seconds,
        strings(argv.iter().map(|a| Some(a.as_str()))),
        strings(runs.iter().map(|r| r.pipeline.as_deref())),
        strings(runs.iter().map(|r| r.pipeline_digest.as_deref())),
        strings(runs.iter().map(|r| r.status.as_deref())),
        Arc::new(Int64Array::from_iter_values(
            runs.iter().map(|r| r.tasks.len() as i64),
        )),
        counts(TaskStatus::Ran),
        counts(TaskStatus::Hit),
        counts(TaskStatus::Failed),
        counts(TaskStatus::Skipped),
    ];
    Ok(RecordBatch::try_new(runs_schema(), columns)?)
}

/// `finished - started` in seconds, NULL where either is NULL.
fn seconds_between(started: &ArrayRef, finished: &ArrayRef) -> anyhow::Result<ArrayRef> {
    use arrow::array::{Array, TimestampMicrosecondArray};
    const MICROS_PER_SECOND: f64 = 1e6;
    let started = started.as_any().downcast_ref::<TimestampMicrosecondArray>();
    let finished = finished
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>();
    let (Some(started), Some(finished)) = (started, finished) else {
        return Err(crate::internal_err!("run timestamps are not microsecond timestamps").into());
    };
    let values = (0..started.len()).map(|i| {
        (started.is_valid(i) && finished.is_valid(i))
            .then(|| (finished.value(i) - started.value(i)) as f64 / MICROS_PER_SECOND)
    });
    Ok(Arc::new(values.collect::<Float64Array>()))
}

/// The `scir_tasks` batch: one row per task of every run.
pub fn tasks_batch(runs: &[RunRecord]) -> anyhow::Result<RecordBatch> {
    let rows: Vec<(&RunRecord, &TaskRecord)> = runs
        .iter()
        .flat_map(|r| r.tasks.iter().map(move |t| (r, t)))
        .collect();
    let rows_json: Vec<Option<String>> = rows
        .iter()
        .map(|(_, t)| t.rows.as_ref().map(serde_json::to_string).transpose())
        .collect::<Result<_, _>>()?;
    let task = |f: fn(&TaskRecord) -> Option<&str>| strings(rows.iter().map(|(_, t)| f(t)));
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|(r, _)| r.run_id.as_deref())),
        task(|t| t.task.as_deref()),
        task(|t| t.stage.as_deref()),
        Arc::new(
            rows.iter()
                .map(|(_, t)| t.iteration)
                .collect::<Int32Array>(),
        ),
        task(|t| t.arm.as_deref()),
        task(|t| t.key.as_deref()),
        task(|t| t.status.as_deref()),
        task(|t| t.reason.as_deref()),
        Arc::new(
            rows.iter()
                .map(|(_, t)| t.seconds)
                .collect::<Float64Array>(),
        ),
        Arc::new(
            rows.iter()
                .map(|(_, t)| t.rows.as_ref().map(|m| m.values().sum::<i64>()))
                .collect::<Int64Array>(),
        ),
        strings(rows_json.iter().map(|s| s.as_deref())),
        task(|t| t.log.as_deref()),
    ];
    Ok(RecordBatch::try_new(tasks_schema(), columns)?)
}
