//! Where and how a stage's tasks run: `shards:` and `resources:` of a `stages:` entry.
//!
//! Neither enters a key: they change how a task is computed, never what it computes
//! (a sharded task's merged tables are byte-identical to the unsharded ones, see
//! [`crate::engine::shard`]).
//!
//! ```yaml
//! generate:
//!   each_iteration: true
//!   shards: 4                    # split the rows into 4 shard tasks and a merge
//!   resources:                   # what a Slurm job of this stage asks for (sbatch options)
//!     cpus: 8                    #   --cpus-per-task=8
//!     mem: 32G                   #   --mem=32G       (a number, optionally K, M, G or T)
//!     gpus: 1                    #   --gres=gpu:1
//!     time: "02:00:00"           #   --time=02:00:00 (Slurm's [D-]HH:MM:SS forms, or minutes)
//!     partition: gpu             #   --partition=gpu
//!     extra: ["--qos=high"]      #   passed as written
//! ```

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::Loc;
use crate::user_err;

/// The most shards a stage may be split into.
pub const MAX_SHARDS: i64 = 1024;

/// `resources:` of a stage: what its Slurm jobs ask for (all optional: the cluster's
/// defaults apply). Parsed as written, then checked by [`resources`].
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    pub cpus: Option<u32>,
    pub mem: Option<String>,
    pub gpus: Option<u32>,
    pub time: Option<String>,
    pub partition: Option<String>,
    pub extra: Vec<String>,
}

impl Resources {
    /// The sbatch options these resources stand for.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(c) = self.cpus {
            out.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            out.push(format!("--mem={m}"));
        }
        if let Some(g) = self.gpus {
            out.push(format!("--gres=gpu:{g}"));
        }
        if let Some(t) = &self.time {
            out.push(format!("--time={t}"));
        }
        if let Some(p) = &self.partition {
            out.push(format!("--partition={p}"));
        }
        out.extend(self.extra.iter().cloned());
        out
    }
}

/// `shards:` validated: 1 when absent; more only for a shardable stage kind.
pub fn shards(
    at: &dyn Fn(Loc) -> String,
    name: &str,
    shardable: bool,
    value: Option<&Spanned<i64>>,
) -> anyhow::Result<u32> {
    let Some(v) = value else { return Ok(1) };
    let here = at(Loc::of(v));
    if !(1..=MAX_SHARDS).contains(&v.value) {
        return Err(user_err!(
            "{here}: stage {name:?}, shards: {} is out of range\nSet `shards:` to a count from 1 \
             to {MAX_SHARDS}.",
            v.value
        )
        .into());
    }
    if v.value > 1 && !shardable {
        return Err(user_err!(
            "{here}: stage {name:?} cannot be sharded (its kind computes rows that depend on \
             each other, or writes a model)\nRemove `shards:`; generate, score-irm, score-grm \
             and answers can be sharded."
        )
        .into());
    }
    Ok(v.value as u32)
}

/// `resources:` validated (the error names the field and the form it takes).
pub fn resources(
    at: &dyn Fn(Loc) -> String,
    name: &str,
    value: Option<&Spanned<Resources>>,
) -> anyhow::Result<Resources> {
    let Some(v) = value else {
        return Ok(Resources::default());
    };
    let here = at(Loc::of(v));
    let r = v.value.clone();
    let bad = |field: &str, got: &str, form: &str| -> anyhow::Error {
        user_err!("{here}: stage {name:?}, resources.{field}: {got:?} is not {form}").into()
    };
    if let Some(m) = &r.mem
        && !is_mem(m)
    {
        return Err(bad("mem", m, "a memory size such as 32G, 512M or 16000"));
    }
    if let Some(t) = &r.time
        && !is_time(t)
    {
        return Err(bad(
            "time",
            t,
            "a Slurm time such as 90, 02:00:00 or 1-12:00:00",
        ));
    }
    if let Some(p) = &r.partition
        && !is_word(p)
    {
        return Err(bad("partition", p, "a partition name"));
    }
    if let Some(x) = r.extra.iter().find(|x| !x.starts_with("--")) {
        return Err(bad("extra", x, "an sbatch long option (--name=value)"));
    }
    if r.cpus == Some(0) {
        return Err(bad("cpus", "0", "a positive count"));
    }
    Ok(r)
}

fn is_mem(s: &str) -> bool {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T']);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && s.len() - digits.len() <= 1
}

fn is_time(s: &str) -> bool {
    let (days, rest) = s.split_once('-').unwrap_or(("0", s));
    let fields: Vec<&str> = rest.split(':').collect();
    let numeric = |f: &str| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit());
    numeric(days) && fields.len() <= 3 && fields.iter().all(|f| numeric(f))
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ','))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_time_forms() {
        for ok in ["32G", "512M", "16000", "1T"] {
            assert!(is_mem(ok), "{ok}");
        }
        for bad in ["", "G", "32GB", "3.5G", "-1"] {
            assert!(!is_mem(bad), "{bad}");
        }
        for ok in ["90", "02:00:00", "1-12", "1-12:00:00", "30:00"] {
            assert!(is_time(ok), "{ok}");
        }
        for bad in ["", "2h", "1:2:3:4", "a-1", "1-"] {
            assert!(!is_time(bad), "{bad}");
        }
    }

    #[test]
    fn resources_become_sbatch_options() {
        let r = Resources {
            cpus: Some(8),
            mem: Some("32G".into()),
            gpus: Some(1),
            time: Some("02:00:00".into()),
            partition: Some("gpu".into()),
            extra: vec!["--qos=high".into()],
        };
        assert_eq!(
            r.sbatch_args(),
            [
                "--cpus-per-task=8",
                "--mem=32G",
                "--gres=gpu:1",
                "--time=02:00:00",
                "--partition=gpu",
                "--qos=high"
            ]
        );
    }
}
