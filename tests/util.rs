//! Test helpers: a temporary project with a pipeline and an artifacts dir,
//! running the CLI in-process (with the test stages) or as a child process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Output, Stdio};

use clap::Parser;
use scir::engine::runlog::{self, RunRecord};
use scir::engine::stage::Registry;

use crate::engine_stages;

/// Run the `scir` binary as a child process with `args`.
pub fn scir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scir"))
        .args(args)
        .output()
        .unwrap()
}

/// The stdout of a command that must have succeeded (else its stderr in the panic).
pub fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// What separates the parts of a fuzz input that becomes several files (the fuzz crate's
/// `scratch::SEPARATOR`, which the tests cannot import).
pub const FUZZ_SEPARATOR: &[u8] = b"\n--8<--\n";

/// Env var that makes the `child_runner` test act as a `scir` process.
pub const CHILD_ARGS_ENV: &str = "SCIR_TEST_CHILD_ARGS";
/// Env var naming the registry the child uses.
pub const CHILD_REGISTRY_ENV: &str = "SCIR_TEST_CHILD_REGISTRY";

/// A temp dir holding `pipeline.yaml` and `artifacts/`.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new(yaml: &str) -> Project {
        let p = Project {
            dir: tempfile::tempdir().unwrap(),
        };
        p.write_pipeline(yaml);
        p
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn pipeline(&self) -> PathBuf {
        self.path("pipeline.yaml")
    }
    pub fn artifacts(&self) -> PathBuf {
        self.path("artifacts")
    }
    pub fn write_pipeline(&self, yaml: &str) {
        std::fs::write(self.pipeline(), yaml).unwrap();
    }
    /// Full argv for `scir <cmd> <pipeline> --artifacts <dir> <extra…>`.
    pub fn argv(&self, cmd: &str, extra: &[&str]) -> Vec<String> {
        let mut v = vec!["scir".to_string(), cmd.to_string()];
        if matches!(cmd, "run" | "status" | "dag") {
            v.push(self.pipeline().display().to_string());
        }
        v.push("--artifacts".into());
        v.push(self.artifacts().display().to_string());
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }
    /// Run a command in-process with `registry`.
    pub fn cmd_with(
        &self,
        registry: &Registry,
        cmd: &str,
        extra: &[&str],
    ) -> anyhow::Result<ExitCode> {
        let cli = scir::cli::Cli::try_parse_from(self.argv(cmd, extra))?;
        scir::cli::run_with_registry(cli, registry)
    }
    /// Run a command in-process with the test registry.
    pub fn cmd(&self, cmd: &str, extra: &[&str]) -> anyhow::Result<ExitCode> {
        self.cmd_with(&engine_stages::registry(), cmd, extra)
    }
    /// `scir run` that must succeed; returns its record.
    pub fn run_ok(&self, extra: &[&str]) -> RunRecord {
        let code = self.cmd("run", extra).unwrap();
        assert_eq!(
            code,
            ExitCode::SUCCESS,
            "scir run failed: {:?}",
            self.last_record().map(|r| r.tasks)
        );
        self.last_record().unwrap()
    }
    /// The newest run record.
    pub fn last_record(&self) -> Option<RunRecord> {
        runlog::list(&self.artifacts().join(".scir/runs"))
            .unwrap()
            .pop()
    }
    /// Executions per task so far (from the test stages' counter).
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let text = std::fs::read_to_string(self.path("count")).unwrap_or_default();
        let mut out = BTreeMap::new();
        for line in text.lines() {
            *out.entry(line.to_string()).or_default() += 1;
        }
        out
    }
    /// Make `task` misbehave (see `engine_stages`), or behave with `""`.
    pub fn set_mode(&self, task: &str, mode: &str) {
        let path = self.path(&format!("mode.{task}"));
        if mode.is_empty() {
            let _ = std::fs::remove_file(path);
        } else {
            std::fs::write(path, mode).unwrap();
        }
    }
    /// Start `scir <cmd>` as a child process (the test binary re-executed).
    pub fn spawn(&self, registry: &str, cmd: &str, extra: &[&str], env: &[(&str, &str)]) -> Child {
        let exe = std::env::current_exe().unwrap();
        let mut c = Command::new(exe);
        c.args([
            "--exact",
            "engine_crash::child_runner",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            CHILD_ARGS_ENV,
            serde_json::to_string(&self.argv(cmd, extra)).unwrap(),
        )
        .env(CHILD_REGISTRY_ENV, registry)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        c.spawn().unwrap()
    }
}

/// Tasks of a record with status `st`, sorted, deduplicated across arms.
pub fn with_status(r: &RunRecord, st: &str) -> Vec<String> {
    let mut v: Vec<String> = r
        .tasks
        .iter()
        .filter(|t| t.status.as_str() == st)
        .map(|t| t.task.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Every file under `dir` (relative path → bytes).
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    for f in scir::engine::files::walk_files(dir).unwrap() {
        let rel = f.strip_prefix(dir).unwrap().display().to_string();
        out.insert(rel, std::fs::read(&f).unwrap_or_default());
    }
    out
}

/// Wait (bounded) until `path` exists; panics after a generous limit.
pub fn wait_for(path: &Path) {
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(120);
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < LIMIT, "{} never appeared", path.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
