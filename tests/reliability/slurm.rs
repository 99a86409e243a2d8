//! `scir run --executor slurm` against a real one-node Slurm (`scripts/slurm-local.sh`,
//! started here when it is not running): a sharded run through Slurm gives the bytes of a
//! local unsharded run; a job killed with `scancel` leaves nothing half-visible, the run
//! reports it and a rerun completes to the same bytes; two runs at once compute each task
//! once.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use scir::engine::runlog::{RunRecord, RunStatus, TaskStatus};
use scir::failpoint::{FAILPOINT_ENV, PARK_ENV};

use super::harness::{TOY, Toy, assert_public_tables_read, assert_same, digests, sharded, stderr};

const SMOKE_DEFAULT: &str = include_str!("../smoke/default.yaml");
const SLURM: &[&str] = &["--json", "--executor", "slurm", "--poll", "0.2"];
/// How long a job may take to reach its failpoint.
const PARK_LIMIT: Duration = Duration::from_secs(300);

/// Start the local cluster once per test process (installs it on a fresh machine).
fn slurm_up() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-local.sh");
        let out = Command::new("bash").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "scripts/slurm-local.sh failed (it needs root and Debian's packages):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

fn record(out: &Output) -> RunRecord {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no run record ({e}):\n{}", stderr(out)))
}

fn slurm_run_ok(toy: &Toy, extra: &[&str]) -> RunRecord {
    let args: Vec<&str> = SLURM.iter().chain(extra).copied().collect();
    let out = toy.output("run", &args, &[]);
    assert!(
        out.status.success(),
        "scir run --executor slurm failed:\n{}",
        stderr(&out)
    );
    record(&out)
}

#[test]
fn a_sharded_slurm_run_has_the_bytes_of_a_local_unsharded_run() {
    slurm_up();
    let local = Toy::new(SMOKE_DEFAULT);
    local.run_ok(&[]);
    let cluster = Toy::new(&sharded(SMOKE_DEFAULT));
    let r = slurm_run_ok(&cluster, &[]);
    let shards_ran = r
        .tasks
        .iter()
        .filter(|t| t.task.contains('#') && t.status == TaskStatus::Ran)
        .count();
    // 3 stages × 4 shards: at iteration 1 shared by the arms, at 2 and 3 one set per arm.
    assert_eq!(shards_ran, 3 * 4 * (1 + 2 + 2));
    assert_same(
        "sharded Slurm run vs local run",
        &digests(&local.artifacts()),
        &digests(&cluster.artifacts()),
    );
    // The merged tasks have the unsharded tasks' keys.
    let refs = |t: &Toy| {
        scir::engine::store::Store::new(&t.artifacts())
            .read_refs()
            .unwrap()
    };
    assert_eq!(refs(&local), refs(&cluster));
    let again = slurm_run_ok(&cluster, &[]);
    assert!(again.tasks.iter().all(|t| t.status == TaskStatus::Hit));
}

#[test]
fn a_job_cancelled_mid_task_leaves_nothing_and_a_rerun_completes() {
    slurm_up();
    let toy = Toy::new(TOY);
    // Every job parks after writing its first table into its staging dir; the first job
    // (world@0) is cancelled there.
    let child = spawn_parked(&toy, &["--stage", "generate", "--iter", "1"]);
    let job = job_id("scir:world@0");
    assert!(
        Command::new("scancel")
            .arg(&job)
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r = record(&out);
    assert_eq!(r.status, RunStatus::Failed);
    let world = r.tasks.iter().find(|t| t.task == "world@0").unwrap();
    assert_eq!(world.status, TaskStatus::Failed);
    assert!(
        world.reason.contains(&format!("Slurm job {job}")) && world.reason.contains("CANCELLED"),
        "{}",
        world.reason
    );
    let store = scir::engine::store::Store::new(&toy.artifacts());
    assert!(
        store.manifest(&world.key).is_none(),
        "the cancelled task was committed"
    );
    assert_public_tables_read(&toy.artifacts(), true);
    assert!(!toy.artifacts().join("tables/world").exists());

    slurm_run_ok(&toy, &["--stage", "generate", "--iter", "1"]);
    let local = Toy::new(TOY);
    let out = local.output("run", &["--stage", "generate", "--iter", "1"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same(
        "rerun after scancel vs local run",
        &digests(&local.artifacts()),
        &digests(&toy.artifacts()),
    );
}

/// `scir run --executor slurm EXTRA…` whose jobs park after writing their first table;
/// returns once one has.
fn spawn_parked(toy: &Toy, extra: &[&str]) -> std::process::Child {
    let parked = toy.path("parked");
    let parked_s = parked.display().to_string();
    let env = [
        (FAILPOINT_ENV, "table-written:1"),
        (PARK_ENV, parked_s.as_str()),
    ];
    let args: Vec<&str> = SLURM.iter().chain(extra).copied().collect();
    let child = toy.command("run", &args, &env).spawn().unwrap();
    let start = Instant::now();
    while !parked.exists() {
        assert!(start.elapsed() < PARK_LIMIT, "no job reached the failpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The id of the one queued job named `name`.
fn job_id(name: &str) -> String {
    let out = Command::new("squeue")
        .args(["--me", "-h", "-o", "%i %j"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, n)| n.trim() == name)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 1, "jobs named {name}: {text}");
    ids[0].to_string()
}

#[test]
fn two_slurm_runs_at_once_compute_each_task_once() {
    slurm_up();
    let toy = Toy::new(&sharded(TOY));
    let spawn = || toy.command("run", SLURM, &[]).spawn().unwrap();
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let mut ran: BTreeMap<String, usize> = BTreeMap::new();
    for r in [record(&a), record(&b)] {
        for t in r.tasks.iter().filter(|t| t.status == TaskStatus::Ran) {
            *ran.entry(t.key.clone()).or_default() += 1;
        }
    }
    let twice: Vec<&String> = ran
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(twice.is_empty(), "computed twice: {twice:?}");
    let store = scir::engine::store::Store::new(&toy.artifacts());
    assert_eq!(
        ran.len(),
        store.object_keys().unwrap().len(),
        "every object computed by one run"
    );
    let local = Toy::new(TOY);
    local.run_ok(&[]);
    assert_same(
        "two Slurm runs vs a local run",
        &digests(&local.artifacts()),
        &digests(&toy.artifacts()),
    );
}

#[test]
fn ctrl_c_cancels_the_submitted_jobs() {
    slurm_up();
    let toy = Toy::new(TOY);
    let child = spawn_parked(&toy, &["--stage", "world"]);
    let job = job_id("scir:world@0");
    let int = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(int.unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let world = record(&out)
        .tasks
        .into_iter()
        .find(|t| t.task == "world@0")
        .unwrap();
    assert!(world.reason.starts_with("interrupted"), "{}", world.reason);
    let listed = Command::new("squeue")
        .args(["-h", "-j", &job, "-o", "%T"])
        .output()
        .unwrap();
    let state = String::from_utf8_lossy(&listed.stdout).trim().to_string();
    assert!(
        state.is_empty() || state == "COMPLETING",
        "job {job} still {state}"
    );
    slurm_run_ok(&toy, &["--stage", "world"]);
}
