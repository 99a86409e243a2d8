//! Training checkpoints that resume bit-identically.
//!
//! A checkpoint directory holds three files:
//!
//! ```text
//! trainer_state.json      TrainerState: step, epoch, data position, RNG, optimizer params
//! optimizer.safetensors   AdamW moments (`<name>.exp_avg`, `<name>.exp_avg_sq`), step in metadata
//! params.safetensors      the trainable variables under their names (LoRA: peft names)
//! ```
//!
//! Everything that decides the next update is in there: parameter values and moments
//! are stored bit-exactly in their own dtype, the RNG as its ChaCha8 seed, stream and
//! word position, and the data order is a pure function of `(seed, epoch)`
//! ([`epoch_order`]) so `data_position` is enough to find the next example. A run that
//! saves at step k and resumes therefore produces the same bytes as one that never
//! stopped (tested).
//!
//! [`save_checkpoint`] writes into a sibling staging directory, fsyncs, then renames it
//! into place (an existing checkpoint is moved aside first and removed after), so a
//! crash leaves either the old or the new checkpoint under the name, never a mix.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use super::optim::{AdamW, AdamWParams};

/// File names inside a checkpoint directory.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
/// See the module docs.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// See the module docs.
pub const PARAMS_FILE: &str = "params.safetensors";
/// Version of the checkpoint layout; bump on any change.
pub const FORMAT_VERSION: u32 = 1;

/// A ChaCha8 generator's exact position.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RngState {
    /// The 32-byte seed, hex.
    pub seed: String,
    /// The stream number.
    pub stream: u64,
    /// Position in 32-bit words (a u128, as a decimal string: JSON numbers are f64).
    pub word_pos: String,
}

impl RngState {
    /// Capture `rng`'s state.
    pub fn capture(rng: &ChaCha8Rng) -> Self {
        let seed = rng.get_seed().iter().map(|b| format!("{b:02x}")).collect();
        Self {
            seed,
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    /// A generator at exactly the captured position.
    pub fn restore(&self) -> Result<ChaCha8Rng> {
        let bad = || format!("rng.seed `{}` is not 64 hex digits", self.seed);
        if self.seed.len() != 64 {
            bail!(bad());
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(&self.seed[2 * i..2 * i + 2], 16).with_context(bad)?;
        }
        let pos: u128 = self
            .word_pos
            .parse()
            .with_context(|| format!("rng.word_pos `{}`", self.word_pos))?;
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(pos);
        Ok(rng)
    }
}

/// Where a run is, apart from tensors (`trainer_state.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Optimizer steps taken.
    pub global_step: u64,
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Examples of the current epoch's order already consumed.
    pub data_position: u64,
    /// The run's seed (data order: [`epoch_order`]).
    pub seed: u64,
    /// The training RNG (dropout, sampling inside training, …).
    pub rng: RngState,
    /// Optimizer hyper-parameters at save time.
    pub optimizer: AdamWParams,
}

impl TrainerState {
    /// State of a run that has not started.
    pub fn start(seed: u64, rng: &ChaCha8Rng, optimizer: AdamWParams) -> Self {
        let rng = RngState::capture(rng);
        Self {
            format_version: FORMAT_VERSION,
            global_step: 0,
            epoch: 0,
            data_position: 0,
            seed,
            rng,
            optimizer,
        }
    }
}

/// The order in which epoch `epoch` visits `n` examples: a Fisher–Yates shuffle driven
/// by ChaCha8 seeded from BLAKE3(`seed`, `epoch`); a pure function of its arguments.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut h = blake3::Hasher::new();
    h.update(b"scir.train.epoch_order.v1\0");
    h.update(&seed.to_le_bytes());
    h.update(&epoch.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(*h.finalize().as_bytes());
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// One minibatch of an epoch-based loop.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochBatch {
    /// The optimizer step it feeds (1-based, counted over all epochs).
    pub step: u64,
    pub epoch: u64,
    /// Example indices, in [`epoch_order`].
    pub items: Vec<usize>,
    /// The data position within the epoch after this batch (resume state).
    pub position: u64,
}

/// The minibatches of `epochs` passes over `n` examples, `batch_size` at a time (the last of
/// an epoch may be smaller), each pass in [`epoch_order`] for `seed`.
pub fn epoch_batches(
    n: usize,
    batch_size: usize,
    epochs: u64,
    seed: u64,
) -> impl Iterator<Item = EpochBatch> {
    let batch_size = batch_size.max(1);
    let per_epoch = (0..epochs).flat_map(move |epoch| {
        let order = epoch_order(n, seed, epoch);
        let batches: Vec<Vec<usize>> = order.chunks(batch_size).map(<[usize]>::to_vec).collect();
        batches
            .into_iter()
            .enumerate()
            .map(move |(c, items)| (epoch, c, items))
    });
    (1u64..)
        .zip(per_epoch)
        .map(move |(step, (epoch, c, items))| EpochBatch {
            step,
            epoch,
            items,
            position: ((c + 1) * batch_size).min(n) as u64,
        })
}

/// Write a checkpoint of `state`, the optimizer and `params` into `dir` (see module docs).
pub fn save_checkpoint(
    dir: &Path,
    state: &TrainerState,
    opt: &AdamW,
    params: &[(String, Var)],
) -> Result<()> {
    let staging = sibling(dir, "staging")?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing stale {}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let json = serde_json::to_string_pretty(state)? + "\n";
    std::fs::write(staging.join(TRAINER_STATE_FILE), json)?;
    crate::failpoint::hit(crate::failpoint::site::RESUME_SAVE);
    opt.save(&staging.join(OPTIMIZER_FILE))?;
    crate::failpoint::hit(crate::failpoint::site::RESUME_SAVE);
    let tensors: BTreeMap<&str, &Tensor> = params
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_tensor()))
        .collect();
    if tensors.len() != params.len() {
        bail!("save_checkpoint: duplicate parameter names");
    }
    safetensors::serialize_to_file(tensors, None, &staging.join(PARAMS_FILE))?;
    for f in [TRAINER_STATE_FILE, OPTIMIZER_FILE, PARAMS_FILE] {
        File::open(staging.join(f))?.sync_all()?;
    }
    let old = sibling(dir, "old")?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        std::fs::rename(dir, &old).with_context(|| format!("moving aside {}", dir.display()))?;
    }
    crate::failpoint::hit(crate::failpoint::site::RESUME_SAVE);
    std::fs::rename(&staging, dir).with_context(|| format!("renaming into {}", dir.display()))?;
    if let Some(parent) = dir.parent() {
        File::open(parent)?.sync_all()?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// Load a checkpoint written by [`save_checkpoint`]: set `params` (matched by name; shape
/// and dtype must agree), restore the optimizer's moments and step, return the state.
pub fn load_checkpoint(
    dir: &Path,
    opt: &mut AdamW,
    params: &[(String, Var)],
) -> Result<TrainerState> {
    let state_path = dir.join(TRAINER_STATE_FILE);
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("reading {}", state_path.display()))?;
    let state: TrainerState = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a scir trainer state", state_path.display()))?;
    if state.format_version != FORMAT_VERSION {
        bail!(
            "{}: format_version {} (this scir reads {FORMAT_VERSION})",
            state_path.display(),
            state.format_version
        );
    }
    let device = params
        .first()
        .map(|(_, v)| v.device().clone())
        .unwrap_or(Device::Cpu);
    let path = dir.join(PARAMS_FILE);
    let mut loaded = candle_core::safetensors::load(&path, &device)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut values = Vec::with_capacity(params.len());
    for (name, var) in params {
        let t = loaded
            .remove(name)
            .with_context(|| format!("{}: missing parameter {name}", path.display()))?;
        if t.shape() != var.shape() || t.dtype() != var.dtype() {
            bail!(
                "{}: {name} is {:?} {:?}, expected {:?} {:?}",
                path.display(),
                t.shape(),
                t.dtype(),
                var.shape(),
                var.dtype()
            );
        }
        values.push(t);
    }
    if let Some(extra) = loaded.keys().min() {
        bail!("{}: unknown parameter {extra}", path.display());
    }
    opt.load(&dir.join(OPTIMIZER_FILE))?;
    if opt.step_count() != state.global_step {
        bail!(
            "{}: optimizer step {} ≠ global_step {}",
            dir.display(),
            opt.step_count(),
            state.global_step
        );
    }
    for ((_, var), t) in params.iter().zip(values) {
        var.set(&t)?;
    }
    opt.set_params(state.optimizer);
    Ok(state)
}

/// `<dir>.<suffix>` next to `dir` (same filesystem, so renames are atomic).
fn sibling(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .with_context(|| format!("{}: not a directory name", dir.display()))?;
    let mut s = name.to_os_string();
    s.push(format!(".{suffix}"));
    Ok(dir.with_file_name(s))
}
