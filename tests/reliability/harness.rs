//! The real `scir` binary on a toy pipeline (`toy.yaml`: every stage, two
//! arms, resume state saved every few training steps), and what "the same
//! result" means: [`digests`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use scir::engine::runlog::RunRecord;
use scir::failpoint::{FAILPOINT_ENV, PARK_ENV, TRACE_ENV};

pub const SCIR: &str = env!("CARGO_BIN_EXE_scir");
pub const TOY: &str = include_str!("toy.yaml");
const JUDGE: &str = include_str!("judge_pointwise.txt");
/// How long a child may take to reach a failpoint (a hang is a failure).
const PARK_LIMIT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(10);

/// A temp dir with `pipeline.yaml` (+ its judge template) and `artifacts/`.
pub struct Toy {
    pub dir: tempfile::TempDir,
}

impl Toy {
    pub fn new(yaml: &str) -> Toy {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pipeline.yaml"), yaml).unwrap();
        std::fs::write(dir.path().join("judge_pointwise.txt"), JUDGE).unwrap();
        Toy { dir }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn artifacts(&self) -> PathBuf {
        self.path("artifacts")
    }
    /// `scir <cmd> [pipeline.yaml] --artifacts A <extra…>` with `env`.
    pub fn command(&self, cmd: &str, extra: &[&str], env: &[(&str, &str)]) -> Command {
        self.command_with("pipeline.yaml", cmd, extra, env)
    }
    /// [`Toy::command`] with another pipeline file of the dir.
    pub fn command_with(
        &self,
        pipeline: &str,
        cmd: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Command {
        let mut c = Command::new(SCIR);
        c.arg(cmd);
        if cmd == "run" {
            c.arg(self.path(pipeline));
        }
        c.arg("--artifacts").arg(self.artifacts()).args(extra);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }
    pub fn output(&self, cmd: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(cmd, extra, env).output().unwrap()
    }
    /// `scir run --json` that must succeed; its record.
    pub fn run_ok(&self, env: &[(&str, &str)]) -> RunRecord {
        let out = self.output("run", &["--json"], env);
        assert!(out.status.success(), "scir run failed:\n{}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("stdout is the run record")
    }
    /// `scir verify` must report every object intact.
    pub fn assert_verify_clean(&self) {
        let out = self.output("verify", &[], &[]);
        assert!(
            out.status.success(),
            "scir verify:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    /// Run with `SCIR_FAILPOINT=<point>`; when the child parks there, SIGKILL it.
    /// Panics when the run ends without reaching the point.
    pub fn run_killed_at(&self, point: &str) {
        let parked = self.path("parked");
        let _ = std::fs::remove_file(&parked);
        let parked_s = parked.display().to_string();
        let env = [(FAILPOINT_ENV, point), (PARK_ENV, parked_s.as_str())];
        let mut child = self.command("run", &[], &env).spawn().unwrap();
        wait_parked(&mut child, &parked, point);
        child.kill().unwrap(); // SIGKILL: no handler, no destructor runs
        child.wait().unwrap();
    }
    /// An uninterrupted run that records every failpoint it passes.
    pub fn run_traced(&self) -> Vec<Point> {
        let trace = self.path("trace.tsv");
        let t = trace.display().to_string();
        self.run_ok(&[(TRACE_ENV, t.as_str())]);
        parse_trace(&std::fs::read_to_string(trace).unwrap())
    }
}

fn wait_parked(child: &mut Child, parked: &Path, point: &str) {
    let start = Instant::now();
    while !parked.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            panic!("the run ended ({status}) without reaching {point}:\n{err}");
        }
        assert!(start.elapsed() < PARK_LIMIT, "{point} never reached");
        std::thread::sleep(POLL);
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One pass of a failpoint site: `<site>:<n>` stops at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub site: String,
    pub n: u64,
    /// The task running at that moment.
    pub task: String,
}

impl Point {
    pub fn spec(&self) -> String {
        format!("{}:{}", self.site, self.n)
    }
    /// The stage of the task (`train@1` → `train`).
    pub fn stage(&self) -> &str {
        self.task.split('@').next().unwrap_or("")
    }
}

fn parse_trace(text: &str) -> Vec<Point> {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    text.lines()
        .map(|line| {
            let (site, task) = line.split_once('\t').unwrap_or((line, ""));
            let n = seen.entry(site.to_string()).or_default();
            *n += 1;
            Point {
                site: site.to_string(),
                n: *n,
                task: task.to_string(),
            }
        })
        .collect()
}

/// What must be identical between two runs of the same pipeline: refs (arm,
/// task → key), every referenced object's output digest and file digests,
/// and the bytes of every public table and model link.
pub fn digests(artifacts: &Path) -> BTreeMap<String, String> {
    let store = scir::engine::store::Store::new(artifacts);
    let mut out = BTreeMap::new();
    for (arm, tasks) in store.read_refs().unwrap() {
        for (task, key) in tasks {
            let m = store
                .manifest(&key)
                .unwrap_or_else(|| panic!("{arm}/{task}: object {key} missing"));
            out.insert(format!("ref {arm}/{task}"), m.output_digest.clone());
            for (file, entry) in m.files {
                out.insert(format!("object {task} {file}"), entry.digest);
            }
        }
    }
    for sub in ["tables", "models"] {
        for file in scir::engine::files::walk_files(&artifacts.join(sub)).unwrap() {
            let rel = file.strip_prefix(artifacts).unwrap().display().to_string();
            let value = match std::fs::read_link(&file) {
                Ok(target) => format!("link {}", target.display()),
                Err(_) => blake3::hash(&std::fs::read(&file).unwrap())
                    .to_hex()
                    .to_string(),
            };
            out.insert(rel, value);
        }
    }
    out
}

/// Every committed object: key → digest of its files.
pub fn objects(artifacts: &Path) -> BTreeMap<String, String> {
    let store = scir::engine::store::Store::new(artifacts);
    let keys = store.object_keys().unwrap();
    keys.into_iter()
        .map(|k| {
            let m = store
                .manifest(&k)
                .expect("a committed object has a manifest");
            (k, m.output_digest)
        })
        .collect()
}

/// Every object of `before` is still in `after`, unchanged.
pub fn assert_kept(
    what: &str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) {
    for (k, d) in before {
        assert_eq!(after.get(k), Some(d), "{what}: object {k} lost or changed");
    }
}

/// Assert two digest maps are equal, naming the first few differences.
pub fn assert_same(what: &str, a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) {
    let diff: Vec<&String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .take(5)
        .collect();
    assert!(diff.is_empty(), "{what}: differs at {diff:?}");
    assert!(!a.is_empty(), "{what}: nothing to compare");
}

/// Every public table reads (nothing half-written is visible). With
/// `killed`, the view's temp files (`*.parquet.new`, which no reader lists)
/// of an interrupted publish may lie next to them.
pub fn assert_public_tables_read(artifacts: &Path, killed: bool) {
    for file in scir::engine::files::walk_files(&artifacts.join("tables")).unwrap() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if killed && name.ends_with(".parquet.new") {
            continue;
        }
        assert!(name.ends_with(".parquet"), "stray public file {name}");
        scir::table::read(&file).unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
    }
}

/// `yaml` with `shards: 4` on generate, score-irm and score-grm.
pub fn sharded(yaml: &str) -> String {
    let mut out = yaml.to_string();
    for stage in ["generate", "score-irm", "score-grm"] {
        let at = format!("  {stage}:\n    each_iteration: true\n");
        assert!(out.contains(&at), "{stage} not found in the pipeline");
        out = out.replace(&at, &format!("{at}    shards: 4\n"));
    }
    out
}
