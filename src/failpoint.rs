//! Named crash points, for the kill-anywhere tests (`tests/reliability.rs`).
//!
//! The code calls [`hit`] at points where a crash matters (a task starts, a
//! Parquet writer emits bytes, a checkpoint file is half written, before the
//! manifest, before the commit rename, after refs …). Nothing happens unless
//! one of these environment variables is set:
//!
//! ```text
//! SCIR_FAILPOINT=<site>[:<n>]    stop at the n-th time (1-based, default 1) this
//!                                process passes <site>
//! SCIR_FAILPOINT_PARK=<path>     how to stop: create <path> and sleep until killed
//!                                (the harness then sends SIGKILL); unset: abort()
//! SCIR_FAILPOINT_TRACE=<path>    append "<site>\t<task> <arm>" for every site passed,
//!                                so a harness can enumerate the points of a run
//! ```
//!
//! Sites are counted per process, so `parquet-write:40` is a deterministic
//! point of a deterministic run (the 40th buffer any Parquet writer emitted).
//! Sites where a file is half written ([`check`] + [`stop`]) put the partial
//! bytes on disk first, so the crash leaves a truncated file behind.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// See the module docs.
pub const FAILPOINT_ENV: &str = "SCIR_FAILPOINT";
/// See the module docs.
pub const PARK_ENV: &str = "SCIR_FAILPOINT_PARK";
/// See the module docs.
pub const TRACE_ENV: &str = "SCIR_FAILPOINT_TRACE";

/// The sites the code base passes (kept in one place for the harness).
pub mod site {
    /// A task's staging dir exists; its stage is about to run.
    pub const TASK_START: &str = "task-start";
    /// A buffer of a Parquet file is about to reach the file (mid-write).
    pub const PARQUET_WRITE: &str = "parquet-write";
    /// A declared table was written into the staging dir.
    pub const TABLE_WRITTEN: &str = "table-written";
    /// A checkpoint file is half written (`Model::save`).
    pub const CHECKPOINT_FILE: &str = "checkpoint-file";
    /// A training-state file of the resume area was written.
    pub const RESUME_SAVE: &str = "resume-save";
    /// An optimizer step of a training stage finished.
    pub const TRAIN_STEP: &str = "train-step";
    /// Outputs checked; the manifest is about to be written.
    pub const BEFORE_MANIFEST: &str = "before-manifest";
    /// The manifest is written; the staging dir is about to be renamed.
    pub const BEFORE_COMMIT: &str = "before-commit";
    /// The object is committed; refs are not updated yet.
    pub const AFTER_COMMIT: &str = "after-commit";
    /// refs.json is updated; the public view is not.
    pub const AFTER_REFS: &str = "after-refs";
    /// One public file is about to be renamed into the view.
    pub const VIEW_FILE: &str = "view-file";
    /// Every task is done; the run record is about to be written.
    pub const BEFORE_RECORD: &str = "before-record";
}

struct Target {
    site: String,
    n: u64,
}

fn target() -> Option<&'static Target> {
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let v = std::env::var(FAILPOINT_ENV).ok()?;
            let (site, n) = match v.rsplit_once(':') {
                Some((s, n)) => (s.to_string(), n.parse().ok()?),
                None => (v, 1),
            };
            Some(Target { site, n })
        })
        .as_ref()
}

fn trace_file() -> Option<&'static Mutex<std::fs::File>> {
    static TRACE: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    TRACE
        .get_or_init(|| {
            let path = std::env::var_os(TRACE_ENV)?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()?;
            Some(Mutex::new(file))
        })
        .as_ref()
}

static CURRENT_TASK: Mutex<String> = Mutex::new(String::new());
static PASSED: AtomicU64 = AtomicU64::new(0);

/// Name the task whose code runs now (for the trace).
pub fn set_task(task: &str) {
    if let Ok(mut t) = CURRENT_TASK.lock() {
        task.clone_into(&mut t);
    }
}

/// Record that `site` was passed; true when the process must stop here now.
pub fn check(site: &str) -> bool {
    if let Some(file) = trace_file() {
        let task = CURRENT_TASK.lock().map(|t| t.clone()).unwrap_or_default();
        if let Ok(mut f) = file.lock() {
            let _ = writeln!(f, "{site}\t{task}");
        }
    }
    let Some(t) = target() else {
        return false;
    };
    t.site == site && PASSED.fetch_add(1, Ordering::SeqCst) + 1 == t.n
}

/// Stop the process at `site`: park until killed (`SCIR_FAILPOINT_PARK`) or abort.
pub fn stop(site: &str) -> ! {
    eprintln!("failpoint {site}: stopping");
    if let Some(path) = std::env::var_os(PARK_ENV) {
        let _ = std::fs::write(&path, site);
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    std::process::abort();
}

/// Stop here if `SCIR_FAILPOINT` names this pass of `site` (see module docs).
pub fn hit(site: &str) {
    if check(site) {
        stop(site);
    }
}
