//! `scir run`: bring tasks up to date.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use super::{PipelineArg, StoreArgs};
use crate::engine::cache::short_key;
use crate::engine::dag::Dag;
use crate::engine::layout::Layout;
use crate::engine::lock::Wait;
use crate::engine::runlog::{RunRecord, RunStatus, TaskStatus};
use crate::engine::sched::slurm::SlurmConfig;
use crate::engine::sched::{self, Executor, RunOptions};
use crate::engine::stage::Registry;
use crate::engine::store::Store;
use crate::report;

/// Bring the pipeline's tasks up to date.
///
/// Every task (stage@iteration) has a key computed from its stage's version,
/// its own resolved params, its seed and the content digests of its inputs. A
/// task whose key has an object in the store is a hit and does not run.
/// Examples:
///
///   scir run                                 everything in ./pipeline.yaml
///   scir run --stage train --iter 2          train@2 and what it needs
///   scir run --stage generate --downstream   generate and everything after it
///   scir run --dry-run                       what would run, and why
///   scir run --executor slurm                each task as a Slurm job (README: Running on a
///                                            cluster); --jobs N: N local processes
///   scir run --seeds 1,2,3                   one run per seed into artifacts/seed-N/,
///                                            then artifacts/seeds.md (mean ± sd, paired
///                                            differences; as `scir report --seeds`)
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub pipeline: PipelineArg,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this arm's tasks (tasks it shares with other arms included).
    #[arg(long, value_name = "ARM")]
    pub arm: Option<String>,
    /// Only this stage's tasks (and, unless --single, what they need).
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<String>,
    /// Only tasks at this iteration (0 for stages that run once).
    #[arg(long, value_name = "N")]
    pub iter: Option<u32>,
    /// Run only the selected tasks; their upstream objects must already exist.
    #[arg(long)]
    pub single: bool,
    /// Also run every task that depends on the selected ones.
    #[arg(long)]
    pub downstream: bool,
    /// Recompute the selected tasks even when their object exists (downstream
    /// reruns only if the bytes change).
    #[arg(long)]
    pub force: bool,
    /// Print what would run and why; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// After a failure, keep running tasks that do not depend on it.
    #[arg(long)]
    pub keep_going: bool,
    /// Fail instead of waiting when another run holds a lock.
    #[arg(long)]
    pub no_wait: bool,
    /// Print the run record as JSON on stdout (progress goes nowhere).
    #[arg(long, conflicts_with = "seeds")]
    pub json: bool,
    /// A sweep: run the pipeline once per seed, each into its own directory
    /// `<artifacts>/seed-<N>/` (reruns hit the cache there), then combine their eval tables
    /// into `<artifacts>/seeds.md`.
    #[arg(
        long,
        value_name = "N,N,...",
        value_delimiter = ',',
        num_args = 1..,
        conflicts_with_all = ["seed", "dry_run"]
    )]
    pub seeds: Vec<u64>,
    #[command(flatten)]
    pub executor: ExecutorArgs,
}

/// Where tasks are computed.
#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// `local`: in this process, one task at a time. `slurm`: each task that must be
    /// computed as an sbatch job running `scir task` (shards of a stage run concurrently);
    /// the artifacts directory must be on a filesystem every node mounts (README, "Running
    /// on a cluster"). A stage's `resources:` become the job's sbatch options.
    #[arg(long, value_enum, default_value = "local")]
    pub executor: ExecutorKind,
    /// With --executor local: compute up to N tasks at once, each as a `scir task` child
    /// process with 1/N of the cores (shards of a stage, and the arms' independent tasks,
    /// overlap). Same bytes as one at a time.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// With --executor slurm: an sbatch option for every job (repeatable), e.g.
    /// --sbatch-arg=--account=lab
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch_arg: Vec<String>,
    /// With --executor slurm: seconds between two `squeue` polls.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.5)]
    pub poll: f64,
}

/// `--executor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    Local,
    Slurm,
}

impl ExecutorArgs {
    /// The validated executor.
    pub fn executor(&self) -> anyhow::Result<Executor> {
        if self.jobs == 0 {
            return Err(crate::user_err!("--jobs must be at least 1").into());
        }
        if self.executor == ExecutorKind::Local {
            if !self.sbatch_arg.is_empty() {
                return Err(crate::user_err!("--sbatch-arg needs --executor slurm").into());
            }
            return Ok(match self.jobs {
                1 => Executor::Local,
                n => Executor::Processes(n),
            });
        }
        if self.jobs != 1 {
            return Err(crate::user_err!(
                "--jobs is for --executor local; under Slurm every ready task is submitted and \
                 the cluster decides how many run"
            )
            .into());
        }
        if !(self.poll.is_finite() && self.poll > 0.0) {
            return Err(crate::user_err!("--poll must be a positive number of seconds").into());
        }
        if let Some(bad) = self.sbatch_arg.iter().find(|a| !a.starts_with("--")) {
            return Err(crate::user_err!(
                "--sbatch-arg {bad:?}: give sbatch long options as --sbatch-arg=--name=value"
            )
            .into());
        }
        Ok(Executor::Slurm(SlurmConfig {
            scir: std::env::current_exe()?,
            poll: std::time::Duration::from_secs_f64(self.poll),
            sbatch_args: self.sbatch_arg.clone(),
        }))
    }
}

/// The artifacts directory of one seed of a sweep.
pub fn seed_dir(artifacts: &Path, seed: u64) -> std::path::PathBuf {
    artifacts.join(format!("seed-{seed}"))
}

/// Run `scir run`.
pub fn run(args: &RunArgs, registry: &Registry) -> anyhow::Result<ExitCode> {
    if !args.seeds.is_empty() {
        return sweep(args, registry);
    }
    run_in(args, registry, &args.pipeline, &args.store.artifacts)
}

/// `--seeds`: one run per seed (stopping at the first that fails), then the combined report.
fn sweep(args: &RunArgs, registry: &Registry) -> anyhow::Result<ExitCode> {
    let mut dirs = Vec::new();
    for (i, &seed) in args.seeds.iter().enumerate() {
        let dir = seed_dir(&args.store.artifacts, seed);
        eprintln!(
            "seed {seed} ({} of {}) → {}",
            i + 1,
            args.seeds.len(),
            dir.display()
        );
        let pipeline = super::PipelineArg {
            seed: Some(seed),
            ..args.pipeline.clone()
        };
        let code = run_in(args, registry, &pipeline, &dir)?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
        dirs.push(dir);
    }
    let runs = dirs
        .iter()
        .map(|dir| Ok((dir.display().to_string(), report::load(dir)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let combined = report::seeds::combine(&runs)?;
    let path = combined.write(&args.store.artifacts)?;
    outln!("{}", combined.markdown());
    eprintln!("seeds report: {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// One run of `pipeline` into `artifacts`.
fn run_in(
    args: &RunArgs,
    registry: &Registry,
    pipeline: &super::PipelineArg,
    artifacts: &Path,
) -> anyhow::Result<ExitCode> {
    let (pipeline, dag) = super::load(pipeline, registry)?;
    let store = Store::new(artifacts);
    let opts = RunOptions {
        arm: args.arm.clone(),
        stage: args.stage.clone(),
        iter: args.iter,
        single: args.single,
        downstream: args.downstream,
        force: args.force,
        keep_going: args.keep_going,
        wait: if args.no_wait {
            Wait::NoWait
        } else {
            Wait::Block
        },
        show_progress: !args.json && std::io::stderr().is_terminal(),
        argv: std::env::args().collect(),
        executor: args.executor.executor()?,
    };
    if args.dry_run {
        dry_run(&store, &dag, &opts)?;
        return Ok(ExitCode::SUCCESS);
    }
    let record = sched::run(&store, &pipeline, &dag, &opts)?;
    refresh_report(artifacts, &record, args.json)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        print_human(&record);
    }
    Ok(exit_code(&record))
}

/// 0 ok; 2 when every failed task failed on the user's input; else 1.
fn exit_code(record: &RunRecord) -> ExitCode {
    let failed: Vec<_> = record
        .tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Failed)
        .collect();
    if record.status == RunStatus::Ok {
        ExitCode::SUCCESS
    } else if !failed.is_empty() && failed.iter().all(|t| t.user_error) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

/// Rebuild `artifacts/report/` and `artifacts/tensorboard/` when this run computed
/// something (or either is missing), so a fully cached run stays cheap. Pipelines without
/// an `eval` table get no report.
fn refresh_report(artifacts: &Path, record: &RunRecord, quiet: bool) -> anyhow::Result<()> {
    let ran = record.tasks.iter().any(|t| t.status == TaskStatus::Ran);
    let missing = !Layout::new(artifacts).report_dir().exists()
        || !Layout::new(artifacts).tensorboard_dir().exists();
    if record.status != RunStatus::Ok || !(ran || missing) {
        return Ok(());
    }
    let written = report::refresh(artifacts)?;
    if let (Some(path), false) = (written, quiet) {
        eprintln!("report: {}", path.display());
    }
    report::tensorboard::refresh(artifacts)?;
    Ok(())
}

fn print_human(record: &RunRecord) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &record.tasks {
        *counts.entry(t.status.as_str()).or_default() += 1;
        let detail = if t.status == TaskStatus::Hit {
            String::new()
        } else {
            format!("  ({})", t.reason)
        };
        outln!(
            "{:<7} {:<24} [{}] {}{detail}",
            t.status,
            t.task,
            t.arm,
            short_key(&t.key)
        );
    }
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    outln!(
        "run {} {}: {}",
        record.run_id,
        record.status,
        summary.join(", ")
    );
}

/// What would run: a task is a hit when its object exists for the key
/// computed from existing upstream objects; otherwise it runs.
fn dry_run(store: &Store, dag: &Dag, opts: &RunOptions) -> anyhow::Result<()> {
    let sel = sched::select(dag, opts)?;
    let mut memo = BTreeMap::new();
    for (i, node) in dag.nodes.iter().enumerate() {
        if !sel.in_plan[i] {
            continue;
        }
        let forced = opts.force && sel.named[i];
        let found = sched::probe(store, dag, i, &mut memo);
        let (what, why) = match (&found, forced) {
            (_, true) => ("run", "forced".to_string()),
            (Some(m), false) => ("hit", short_key(&m.key).to_string()),
            (None, false) => {
                let stale_up = node
                    .inputs
                    .values()
                    .find(|u| memo.get(u).is_some_and(Option::is_none));
                match stale_up {
                    Some(u) => ("run", format!("upstream {} runs", dag.nodes[*u].task)),
                    None => ("run", sched::why_stale(store, dag, i, &memo)),
                }
            }
        };
        outln!(
            "{what:<4} {:<24} [{}] {why}",
            node.task,
            node.arms.join(",")
        );
    }
    Ok(())
}
