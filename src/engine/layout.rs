//! Where everything lives under an artifacts directory — the one owner of these paths.
//!
//! ```text
//! artifacts/
//!     tables/<table>/iter-NNNN.<arm>.parquet   PUBLIC: one file per task and arm (the view)
//!     models/<arm>/<stage>@<k>                 PUBLIC: symlink to a checkpoint
//!     report/                                  `scir report`'s report.md, charts, index.html
//!     tensorboard/<arm>/<task>/                training metrics as TensorBoard event files
//!     exports/<format>/…                       `scir export`
//!     .scir/                                   INTERNAL (layout may change)
//!         lock                                 global flock (refs + view)
//!         refs.json                            arm -> task -> key ("current")
//!         published.json                       public file -> key it shows
//!         statcache.json                       digests of external files by stat
//!         objects/<ab>/<key>/                  immutable committed outputs
//!         locks/<key>.lock                     per-key flock
//!         tmp/<run-id>/<task>-<key8>/          staging, same filesystem
//!         resume/<key>/                        a task's resume state
//!         runs/<run-id>/run.json               run records (+ a log per task)
//! ```

use std::path::{Path, PathBuf};

use crate::table;

/// The internal directory under the artifacts dir.
pub const INTERNAL: &str = ".scir";
/// The public tables directory.
pub const TABLES: &str = "tables";
/// The public models directory.
pub const MODELS: &str = "models";
/// The report directory.
pub const REPORT: &str = "report";
/// The exports directory.
pub const EXPORTS: &str = "exports";
/// The TensorBoard directory.
pub const TENSORBOARD: &str = "tensorboard";
/// The objects directory under the internal one.
const OBJECTS: &str = "objects";
/// A run record's file name inside its run directory.
pub const RUN_FILE: &str = "run.json";

/// The paths of one artifacts directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }
    /// The artifacts directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `tables/`.
    pub fn tables_dir(&self) -> PathBuf {
        self.root.join(TABLES)
    }
    /// A public table file, relative to the root: `tables/<name>/iter-NNNN.<arm>.parquet`.
    pub fn table_file(name: &str, iteration: u32, arm: &str) -> String {
        format!(
            "{TABLES}/{name}/iter-{iteration:04}.{arm}.{}",
            table::EXTENSION
        )
    }
    /// `models/`.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join(MODELS)
    }
    /// A public model link, relative to the root: `models/<arm>/<stage>@<k>`.
    pub fn model_link(arm: &str, stage: &str, iteration: u32) -> String {
        format!("{MODELS}/{arm}/{stage}@{iteration}")
    }
    /// `report/`.
    pub fn report_dir(&self) -> PathBuf {
        self.root.join(REPORT)
    }
    /// `exports/`.
    pub fn exports_dir(&self) -> PathBuf {
        self.root.join(EXPORTS)
    }
    /// `tensorboard/`.
    pub fn tensorboard_dir(&self) -> PathBuf {
        self.root.join(TENSORBOARD)
    }

    /// The target of a model link (relative to the link's directory `models/<arm>/`):
    /// `../../.scir/objects/<ab>/<key>/<checkpoint>`.
    pub fn model_link_target(key: &str, checkpoint: &str) -> PathBuf {
        Path::new("../..")
            .join(INTERNAL)
            .join(OBJECTS)
            .join(Self::object_rel(key))
            .join(checkpoint)
    }

    /// `.scir/`.
    pub fn internal(&self) -> PathBuf {
        self.root.join(INTERNAL)
    }
    pub fn objects_dir(&self) -> PathBuf {
        self.internal().join(OBJECTS)
    }
    /// `.scir/objects/<ab>/<key>`.
    pub fn object_dir(&self, key: &str) -> PathBuf {
        self.objects_dir().join(Self::object_rel(key))
    }
    /// `<ab>/<key>`: an object's directory relative to `objects/`.
    pub fn object_rel(key: &str) -> PathBuf {
        Path::new(&key[..2.min(key.len())]).join(key)
    }
    pub fn locks_dir(&self) -> PathBuf {
        self.internal().join("locks")
    }
    pub fn key_lock(&self, key: &str) -> PathBuf {
        self.locks_dir().join(format!("{key}.lock"))
    }
    pub fn global_lock(&self) -> PathBuf {
        self.internal().join("lock")
    }
    /// The resume areas' directory.
    pub fn resume_root(&self) -> PathBuf {
        self.internal().join("resume")
    }
    /// The resume area of task key `key` (see [`crate::engine::stage::TaskContext::resume_dir`]).
    pub fn resume_dir(&self, key: &str) -> PathBuf {
        self.resume_root().join(key)
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.internal().join("tmp")
    }
    pub fn runs_dir(&self) -> PathBuf {
        self.internal().join("runs")
    }
    /// `.scir/runs/<run-id>/run.json`.
    pub fn run_file(&self, run_id: &str) -> PathBuf {
        self.runs_dir().join(run_id).join(RUN_FILE)
    }
    pub fn refs_path(&self) -> PathBuf {
        self.internal().join("refs.json")
    }
    pub fn published_path(&self) -> PathBuf {
        self.internal().join("published.json")
    }
    pub fn statcache_path(&self) -> PathBuf {
        self.internal().join("statcache.json")
    }
}
