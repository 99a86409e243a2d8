//! Where a task computed outside the run's process goes: a Slurm job, or a child process
//! on this machine (`--jobs N`). Both run `scir task` for exactly that task
//! ([`super::remote`]) and leave a report next to their log; the run loop
//! ([`super::drive`]) starts, polls and cancels them through [`Workers`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::slurm::{self, SlurmConfig};
use crate::engine::config::Resources;

/// One started task.
#[derive(Debug, Clone)]
pub struct Job {
    /// The Slurm job id, or the child's pid.
    pub id: String,
    /// `Slurm job 123` or `process 4567` (for messages).
    pub what: String,
    /// Its stdout and stderr.
    pub log: PathBuf,
    /// Where `scir task` writes its report.
    pub report: PathBuf,
}

/// What to start: the job's name, its `scir task` command, where its files go.
pub struct Start<'a> {
    pub name: &'a str,
    /// `<run dir>/slurm/<task>.<arm>` or `<run dir>/jobs/<task>.<arm>`: the script, log and
    /// report extend it.
    pub stem: PathBuf,
    pub command: Vec<String>,
    pub resources: &'a Resources,
}

/// Starts, polls and cancels jobs.
pub trait Workers {
    /// The directory of the run dir its files go to.
    fn dir(&self) -> &'static str;
    /// Whether another job may start while `running` are.
    fn has_room(&self, running: usize) -> bool;
    fn start(&mut self, s: &Start) -> anyhow::Result<Job>;
    /// The ids of `jobs` that have ended.
    fn ended(&mut self, jobs: &[&Job]) -> anyhow::Result<Vec<String>>;
    fn cancel(&mut self, jobs: &[&Job]);
    /// How a job that left no report ended.
    fn end_state(&mut self, job: &Job) -> String;
    /// How long to wait between two polls.
    fn poll(&self) -> Duration;
}

/// Slurm batch jobs.
pub struct SlurmWorkers<'c>(pub &'c SlurmConfig);

impl Workers for SlurmWorkers<'_> {
    fn dir(&self) -> &'static str {
        "slurm"
    }
    fn has_room(&self, _running: usize) -> bool {
        true
    }
    fn start(&mut self, s: &Start) -> anyhow::Result<Job> {
        let (id, log) = slurm::submit(self.0, s.name, &s.stem, &s.command, s.resources)?;
        Ok(Job {
            what: format!("Slurm job {id}"),
            id,
            log,
            report: slurm::report_path(&s.stem),
        })
    }
    fn ended(&mut self, jobs: &[&Job]) -> anyhow::Result<Vec<String>> {
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        let listed = slurm::listed(&ids)?;
        Ok(ids
            .into_iter()
            .filter(|id| !listed.contains(*id))
            .map(str::to_string)
            .collect())
    }
    fn cancel(&mut self, jobs: &[&Job]) {
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        slurm::cancel(&ids);
    }
    fn end_state(&mut self, job: &Job) -> String {
        slurm::end_state(&job.id)
    }
    fn poll(&self) -> Duration {
        self.0.poll
    }
}

/// Child processes on this machine, at most `jobs` at a time, each with an equal share of
/// the cores (`RAYON_NUM_THREADS`, unless set: the thread count never changes a result).
pub struct ProcessWorkers {
    pub jobs: usize,
    children: BTreeMap<String, Child>,
    ended: BTreeMap<String, String>,
}

/// How often child processes are polled.
const PROCESS_POLL: Duration = Duration::from_millis(50);

impl ProcessWorkers {
    pub fn new(jobs: usize) -> ProcessWorkers {
        ProcessWorkers {
            jobs,
            children: BTreeMap::new(),
            ended: BTreeMap::new(),
        }
    }
}

impl Workers for ProcessWorkers {
    fn dir(&self) -> &'static str {
        "jobs"
    }
    fn has_room(&self, running: usize) -> bool {
        running < self.jobs
    }
    fn start(&mut self, s: &Start) -> anyhow::Result<Job> {
        if let Some(dir) = s.stem.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = slurm::suffixed(&s.stem, "out");
        let report = slurm::report_path(&s.stem);
        let _ = std::fs::remove_file(&report);
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(&s.command[0]);
        cmd.args(&s.command[1..])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            cmd.env("RAYON_NUM_THREADS", (cores / self.jobs).max(1).to_string());
        }
        let child = cmd.spawn()?;
        let id = child.id().to_string();
        self.children.insert(id.clone(), child);
        Ok(Job {
            what: format!("process {id}"),
            id,
            log,
            report,
        })
    }
    fn ended(&mut self, jobs: &[&Job]) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for job in jobs {
            let Some(child) = self.children.get_mut(&job.id) else {
                continue;
            };
            if let Some(status) = child.try_wait()? {
                self.ended.insert(job.id.clone(), status.to_string());
                self.children.remove(&job.id);
                out.push(job.id.clone());
            }
        }
        Ok(out)
    }
    fn cancel(&mut self, jobs: &[&Job]) {
        for job in jobs {
            if let Some(mut child) = self.children.remove(&job.id) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    fn end_state(&mut self, job: &Job) -> String {
        self.ended
            .get(&job.id)
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    }
    fn poll(&self) -> Duration {
        PROCESS_POLL
    }
}
