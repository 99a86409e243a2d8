//! AdamW with saveable state, gradient accumulation and global-norm clipping.
//!
//! [`AdamW`] follows `torch.optim.AdamW` (single-tensor path, `amsgrad=False`,
//! `maximize=False`) operation by operation, for step `t` (1-based):
//!
//! ```text
//! θ ← θ·(1 − lr·wd)                          decoupled weight decay
//! m ← m + (1 − β1)·(g − m)                    torch's `lerp_`
//! v ← β2·v + (1 − β2)·g²
//! θ ← θ − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
//! ```
//!
//! Unlike candle's own `AdamW`, the moments are reachable: [`AdamW::save`] writes
//! them to one safetensors file (`<name>.exp_avg`, `<name>.exp_avg_sq`, plus the
//! step count in the file's metadata) and [`AdamW::load`] restores them exactly,
//! so a resumed run continues bit-identically. Moments live in each parameter's
//! dtype (no f32 master copy). Contiguous f32 parameters (every model weight) are
//! updated in place in one pass ([`super::fused_adamw`], bit-identical to the op
//! chain above, which other dtypes still run); their moments are plain `Vec<f32>`.
//!
//! Parameters are named (`(name, Var)`); names key the saved state, so the order
//! of the list does not matter when loading. A parameter without a gradient in
//! a step is left untouched (its moments too), like torch's `p.grad is None`.
//!
//! [`GradAccumulator`] sums the gradients of the tracked parameters over
//! micro-batches and scales the sum (by `1/n` for a mean); [`clip_grad_norm`]
//! rescales a [`GradStore`] to a maximum global L2 norm and returns the norm
//! before clipping (the `grad_norm` metric), like
//! `torch.nn.utils.clip_grad_norm_`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Device, Storage, Tensor, Var};

use super::fused_adamw::{AdamWCoefs, FusedAdamW, sum_sq_f64};

/// Hyper-parameters of [`AdamW`]; defaults are torch's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWParams {
    /// Learning rate (the schedule overrides it per step).
    pub lr: f64,
    /// `β1`: decay of the first moment.
    pub beta1: f64,
    /// `β2`: decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay coefficient.
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// One named parameter with its two moments.
#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    moments: Moments,
}

/// The two moments of one parameter.
#[derive(Debug)]
enum Moments {
    /// A contiguous f32 parameter: updated in place by [`FusedAdamW`].
    F32 {
        exp_avg: Vec<f32>,
        exp_avg_sq: Vec<f32>,
    },
    /// Any other parameter: candle ops (the reference arithmetic).
    Tensors { exp_avg: Tensor, exp_avg_sq: Tensor },
}

impl Moments {
    /// Zero moments for `var`.
    fn zeros(var: &Var) -> Result<Self> {
        Ok(if var.dtype() == DType::F32 && var.is_contiguous() {
            let n = var.elem_count();
            Moments::F32 {
                exp_avg: vec![0.0; n],
                exp_avg_sq: vec![0.0; n],
            }
        } else {
            Moments::Tensors {
                exp_avg: var.zeros_like()?,
                exp_avg_sq: var.zeros_like()?,
            }
        })
    }

    /// `(exp_avg, exp_avg_sq)` as tensors of `var`'s shape.
    fn tensors(&self, var: &Var) -> Result<(Tensor, Tensor)> {
        Ok(match self {
            Moments::F32 {
                exp_avg,
                exp_avg_sq,
            } => (
                Tensor::from_slice(exp_avg, var.shape(), var.device())?,
                Tensor::from_slice(exp_avg_sq, var.shape(), var.device())?,
            ),
            Moments::Tensors {
                exp_avg,
                exp_avg_sq,
            } => (exp_avg.clone(), exp_avg_sq.clone()),
        })
    }

    /// Replace the moments with loaded tensors (already checked against `var`).
    fn set(&mut self, m: Tensor, v: Tensor) -> Result<()> {
        match self {
            Moments::F32 {
                exp_avg,
                exp_avg_sq,
            } => {
                *exp_avg = m.flatten_all()?.to_vec1::<f32>()?;
                *exp_avg_sq = v.flatten_all()?.to_vec1::<f32>()?;
            }
            Moments::Tensors {
                exp_avg,
                exp_avg_sq,
            } => {
                *exp_avg = m;
                *exp_avg_sq = v;
            }
        }
        Ok(())
    }
}

/// AdamW over named candle variables; see the module docs.
#[derive(Debug)]
pub struct AdamW {
    slots: Vec<Slot>,
    step: u64,
    params: AdamWParams,
}

/// Safetensors metadata key holding the step count.
const STEP_KEY: &str = "step";
const EXP_AVG: &str = "exp_avg";
const EXP_AVG_SQ: &str = "exp_avg_sq";

impl AdamW {
    /// An optimizer over `vars` with zero moments at step 0. Names must be unique.
    pub fn new(vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        let mut seen = std::collections::BTreeSet::new();
        let mut slots = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            if !var.dtype().is_float() {
                bail!(
                    "AdamW: parameter {name} has non-float dtype {:?}",
                    var.dtype()
                );
            }
            if !seen.insert(name.clone()) {
                bail!("AdamW: parameter name {name} appears twice");
            }
            let moments = Moments::zeros(&var)?;
            slots.push(Slot { name, var, moments });
        }
        Ok(Self {
            slots,
            step: 0,
            params,
        })
    }

    /// Number of optimizer steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The hyper-parameters.
    pub fn params(&self) -> &AdamWParams {
        &self.params
    }

    /// Replace the hyper-parameters (the moments and step are kept).
    pub fn set_params(&mut self, params: AdamWParams) {
        self.params = params;
    }

    /// Set the learning rate used by the next [`AdamW::step`].
    pub fn set_lr(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// The parameters, in the order given at construction.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.slots.iter().map(|s| (s.name.as_str(), &s.var))
    }

    /// One update with the gradients in `grads` (parameters without one are skipped).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let AdamWParams {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.params;
        let t = self.step as i32;
        let bias_correction1 = 1.0 - beta1.powi(t);
        let bias_correction2_sqrt = (1.0 - beta2.powi(t)).sqrt();
        let step_size = lr / bias_correction1;
        let coefs = AdamWCoefs::new(
            lr,
            weight_decay,
            (beta1, beta2, eps),
            bias_correction2_sqrt,
            step_size,
        );
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let g = g.to_dtype(slot.var.dtype())?;
            match &mut slot.moments {
                Moments::F32 {
                    exp_avg,
                    exp_avg_sq,
                } => {
                    let op = FusedAdamW {
                        coefs,
                        moments: RefCell::new((exp_avg, exp_avg_sq)),
                    };
                    slot.var.as_tensor().inplace_op2(&g.contiguous()?, &op)?;
                }
                Moments::Tensors {
                    exp_avg,
                    exp_avg_sq,
                } => {
                    let theta = (slot.var.as_tensor() * (1.0 - lr * weight_decay))?;
                    let m = (&*exp_avg + ((&g - &*exp_avg)? * (1.0 - beta1))?)?;
                    let v = ((&*exp_avg_sq * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
                    let denom = ((v.sqrt()? / bias_correction2_sqrt)? + eps)?;
                    let theta = (theta - ((&m / denom)? * step_size)?)?;
                    slot.var.set(&theta)?;
                    *exp_avg = m;
                    *exp_avg_sq = v;
                }
            }
        }
        Ok(())
    }

    /// Write the moments and the step count to one safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
        for s in &self.slots {
            let (m, v) = s.moments.tensors(&s.var)?;
            tensors.insert(format!("{}.{EXP_AVG}", s.name), m);
            tensors.insert(format!("{}.{EXP_AVG_SQ}", s.name), v);
        }
        let metadata = HashMap::from([(STEP_KEY.to_string(), self.step.to_string())]);
        safetensors::serialize_to_file(tensors.iter(), Some(metadata), path)
            .with_context(|| format!("writing optimizer state {}", path.display()))?;
        Ok(())
    }

    /// Restore the moments and step count written by [`AdamW::save`]. Every parameter
    /// must have both moments with its own shape and dtype; extra entries are an error.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading optimizer state {}", path.display()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?;
        let step = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(STEP_KEY))
            .and_then(|s| s.parse::<u64>().ok())
            .with_context(|| format!("{}: no `{STEP_KEY}` in the metadata", path.display()))?;
        let device = self
            .slots
            .first()
            .map(|s| s.var.device().clone())
            .unwrap_or(Device::Cpu);
        let mut loaded = candle_core::safetensors::load_buffer(&bytes, &device)
            .with_context(|| format!("{}: unreadable tensors", path.display()))?;
        let mut updates = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let mut take = |kind: &str| -> Result<Tensor> {
                let key = format!("{}.{kind}", s.name);
                let t = loaded
                    .remove(&key)
                    .with_context(|| format!("{}: missing {key}", path.display()))?;
                if t.shape() != s.var.shape() || t.dtype() != s.var.dtype() {
                    bail!(
                        "{}: {key} is {:?} {:?}, the parameter is {:?} {:?}",
                        path.display(),
                        t.shape(),
                        t.dtype(),
                        s.var.shape(),
                        s.var.dtype()
                    );
                }
                Ok(t)
            };
            updates.push((take(EXP_AVG)?, take(EXP_AVG_SQ)?));
        }
        if let Some(extra) = loaded.keys().min() {
            bail!(
                "{}: state for unknown parameter entry {extra}",
                path.display()
            );
        }
        for (s, (m, v)) in self.slots.iter_mut().zip(updates) {
            s.moments.set(m, v)?;
        }
        self.step = step;
        Ok(())
    }
}

/// Sums the gradients of a fixed list of parameters over micro-batches.
#[derive(Debug)]
pub struct GradAccumulator {
    vars: Vec<Var>,
    sums: Vec<Option<Tensor>>,
    micro_batches: usize,
}

impl GradAccumulator {
    /// An empty accumulator for `vars`.
    pub fn new(vars: Vec<Var>) -> Self {
        let sums = vec![None; vars.len()];
        Self {
            vars,
            sums,
            micro_batches: 0,
        }
    }

    /// Add one micro-batch's gradients (only the tracked parameters are kept, detached).
    pub fn add(&mut self, grads: &GradStore) -> Result<()> {
        for (var, sum) in self.vars.iter().zip(self.sums.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = g.detach();
            *sum = Some(match sum.take() {
                None => g,
                Some(s) => (s + g)?,
            });
        }
        self.micro_batches += 1;
        Ok(())
    }

    /// Micro-batches added so far.
    pub fn micro_batches(&self) -> usize {
        self.micro_batches
    }

    /// The summed gradients times `scale` (`1/n` turns sums of per-micro-batch means
    /// into the mean over n equal micro-batches), and reset the accumulator.
    pub fn finish(&mut self, scale: f64) -> Result<GradStore> {
        let mut store = GradStore::default();
        for (var, sum) in self.vars.iter().zip(self.sums.iter_mut()) {
            if let Some(s) = sum.take() {
                let g = if scale == 1.0 { s } else { (s * scale)? };
                store.insert(var.as_tensor(), g);
            }
        }
        self.micro_batches = 0;
        Ok(store)
    }
}

/// Torch's `clip_grad_norm_` guard against division by zero.
const CLIP_EPS: f64 = 1e-6;

/// Global L2 norm of the gradients of `vars` (missing gradients count as zero).
pub fn grad_norm(grads: &GradStore, vars: &[Var]) -> Result<f64> {
    let mut sq = 0f64;
    for var in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            sq += match f32_sum_sq(g) {
                Some(s) => s,
                None => g
                    .to_dtype(DType::F64)?
                    .sqr()?
                    .sum_all()?
                    .to_scalar::<f64>()?,
            };
        }
    }
    Ok(sq.sqrt())
}

/// [`sum_sq_f64`] of a contiguous f32 CPU tensor, read in place; `None` for any other.
fn f32_sum_sq(t: &Tensor) -> Option<f64> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(xs)), Some((a, b))) => Some(sum_sq_f64(&xs[a..b])),
        _ => None,
    }
}

/// Scale the gradients of `vars` so their global L2 norm is at most `max_norm`
/// (by `max_norm / (norm + 1e-6)`, as torch does, only when that is below 1).
/// Returns the norm before clipping. A non-finite norm leaves the gradients as they
/// are and is returned, so the caller can stop on it.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let norm = grad_norm(grads, vars)?;
    let coef = max_norm / (norm + CLIP_EPS);
    if norm.is_finite() && coef < 1.0 {
        for var in vars {
            if let Some(g) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (g * coef)?);
            }
        }
    }
    Ok(norm)
}
