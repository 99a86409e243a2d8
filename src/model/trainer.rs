//! One optimizer update from micro-batch gradients, and the GRM's differentiable input.
//!
//! [`Stepper`] is the update rule every training stage shares:
//!
//! ```text
//! accumulate(grads of micro-batch 1) … accumulate(grads of micro-batch n)
//! step():  g = Σ gᵢ / n        (each micro-batch loss is a mean over equal-sized parts)
//!          grad_norm = ‖g‖₂ over the trainable tensors (reported before clipping)
//!          g ← g · min(1, max_norm / (grad_norm + 1e-6))
//!          lr = schedule(optimizer steps so far);  AdamW step
//! ```
//!
//! A non-finite gradient norm is an error and leaves parameters and optimizer state
//! unchanged, so the caller can stop without committing anything.
//!
//! [`StepOutputs`] is where a training step's model outputs come from: the fast path's
//! recorded forward and hand-written backward ([`super::fast::train`]) when it applies (f32
//! weights and adapters on the CPU: full fine-tuning or LoRA), candle's autograd otherwise
//! (other dtypes). Both give the
//! same gradients within the tolerance the tests state.
//!
//! [`verdict_logit_gaps`] is the judge quantity for training: `l_A − l_B` at each judge
//! prompt's last position, `(b,)`. `σ(l_A − l_B)` is the model's `scoring::verdict_probs`
//! `P(A)`; the gap keeps p ≈ 0 or 1 exact in log space for the consistency loss.

use anyhow::{Context, Result, bail};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use super::decoder::Decoder;
use super::linear::Adapters;
use super::optim::{AdamW, AdamWParams, GradAccumulator, clip_grad_norm};
use super::schedule::LrSchedule;

/// The model outputs of one training step and how their gradients reach the weights.
pub enum StepOutputs<'d> {
    /// Candle's autograd through the differentiable decoder.
    Candle { dec: &'d Decoder, pad_id: u32 },
    /// The fast path's recorder (see [`super::fast::train`]).
    Fast(super::fast::train::Recorder<'d>),
}

impl<'d> StepOutputs<'d> {
    /// The fast path when it applies to `dec`, else candle's autograd.
    pub fn new(dec: &'d Decoder, pad_id: u32) -> Self {
        match super::fast::train::Recorder::new(dec) {
            Some(rec) => StepOutputs::Fast(rec),
            None => StepOutputs::Candle { dec, pad_id },
        }
    }

    /// Sum of response-token log-probs per item, `(b,)`, differentiable.
    pub fn response_logprobs(&mut self, items: &[super::score::Pair]) -> anyhow::Result<Tensor> {
        match self {
            StepOutputs::Candle { dec, pad_id } => {
                super::score::response_logprobs(dec, items, *pad_id, Adapters::On)
            }
            StepOutputs::Fast(rec) => rec.response_logprobs(items),
        }
    }

    /// Logits of `tokens` at each prompt's last position, `(b, tokens.len())`, differentiable.
    pub fn last_logits(&mut self, prompts: &[Vec<u32>], tokens: &[u32]) -> anyhow::Result<Tensor> {
        let vocab = match self {
            StepOutputs::Candle { dec, .. } => dec.config().vocab_size,
            StepOutputs::Fast(rec) => rec.vocab_size(),
        };
        super::score::check_judge_tokens(vocab, tokens)?;
        match self {
            StepOutputs::Candle { dec, pad_id } => {
                super::score::token_logits_at_last(dec, prompts, tokens, *pad_id, Adapters::On)
            }
            StepOutputs::Fast(rec) => rec.last_logits(prompts, tokens),
        }
    }

    /// A reward model's `r(x, y)` of each sequence, `(b,)`, differentiable (see
    /// [`super::reward::rewards`]).
    pub fn rewards(&mut self, seqs: &[Vec<u32>]) -> anyhow::Result<Tensor> {
        match self {
            StepOutputs::Candle { dec, pad_id } => {
                super::reward::rewards(dec, seqs, *pad_id, Adapters::On)
            }
            StepOutputs::Fast(rec) => {
                super::reward::check_reward_model(rec.decoder())?;
                let r = rec.last_logits(seqs, &[super::reward::SCORE_OUTPUT])?;
                Ok(r.squeeze(1)?)
            }
        }
    }

    /// `l_A − l_B` at each judge prompt's last position, `(b,)` (see [`verdict_logit_gaps`]).
    pub fn verdict_logit_gaps(
        &mut self,
        prompts: &[Vec<u32>],
        (a, b): (u32, u32),
    ) -> Result<Tensor> {
        logit_gap(&self.last_logits(prompts, &[a, b])?)
    }

    /// The weights' gradients of `loss`.
    pub fn gradients(self, loss: &Tensor) -> Result<GradStore> {
        let grads = loss.backward()?;
        match self {
            StepOutputs::Candle { .. } => Ok(grads),
            StepOutputs::Fast(rec) => rec.weight_grads(&grads),
        }
    }
}

/// What one update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Optimizer steps taken, this one included.
    pub step: u64,
    /// The learning rate this update used.
    pub lr: f64,
    /// Global L2 norm of the (averaged) gradient before clipping.
    pub grad_norm: f64,
}

/// Gradient accumulation, clipping, schedule and AdamW together (see the module docs).
#[derive(Debug)]
pub struct Stepper {
    opt: AdamW,
    accum: GradAccumulator,
    vars: Vec<Var>,
    schedule: LrSchedule,
    max_grad_norm: Option<f64>,
}

impl Stepper {
    /// A stepper over the named trainable tensors.
    pub fn new(
        vars: Vec<(String, Var)>,
        params: AdamWParams,
        schedule: LrSchedule,
        max_grad_norm: Option<f64>,
    ) -> Result<Self> {
        if let Some(m) = max_grad_norm
            && !(m.is_finite() && m > 0.0)
        {
            bail!(crate::user_err!(
                "max_grad_norm must be a positive number, got {m}"
            ));
        }
        let plain: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
        let opt = AdamW::new(vars, params)?;
        Ok(Self {
            opt,
            accum: GradAccumulator::new(plain.clone()),
            vars: plain,
            schedule,
            max_grad_norm,
        })
    }

    /// Add one micro-batch's gradients.
    pub fn accumulate(&mut self, grads: &GradStore) -> Result<()> {
        self.accum.add(grads)
    }

    /// Apply the accumulated gradients (their mean over micro-batches).
    pub fn step(&mut self) -> Result<StepInfo> {
        let n = self.accum.micro_batches();
        if n == 0 {
            bail!(crate::internal_err!(
                "Stepper::step without any accumulated micro-batch"
            ));
        }
        let mut grads = self.accum.finish(1.0 / n as f64)?;
        let grad_norm = match self.max_grad_norm {
            Some(max) => clip_grad_norm(&mut grads, &self.vars, max)?,
            None => super::optim::grad_norm(&grads, &self.vars)?,
        };
        let step = self.opt.step_count();
        if !grad_norm.is_finite() {
            bail!(
                "gradient norm is {grad_norm} at optimizer step {}: training diverged (lower the learning rate)",
                step + 1
            );
        }
        let lr = self.schedule.lr(step);
        self.opt.set_lr(lr);
        self.opt.step(&grads)?;
        Ok(StepInfo {
            step: self.opt.step_count(),
            lr,
            grad_norm,
        })
    }

    /// The optimizer (for saving and loading its state).
    pub fn optimizer(&self) -> &AdamW {
        &self.opt
    }

    /// See [`Stepper::optimizer`].
    pub fn optimizer_mut(&mut self) -> &mut AdamW {
        &mut self.opt
    }
}

/// Every variable of `varmap` with its name, sorted by name (full fine-tuning).
pub fn varmap_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| crate::internal_err!("VarMap lock poisoned"))?;
    let mut vars: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(vars)
}

/// `l_A − l_B` at each prompt's last token, `(b,)` f32, differentiable.
pub fn verdict_logit_gaps(
    dec: &Decoder,
    prompts: &[Vec<u32>],
    (tok_a, tok_b): (u32, u32),
    pad_id: u32,
    adapters: Adapters,
) -> Result<Tensor> {
    super::score::check_judge_tokens(dec.config().vocab_size, &[tok_a, tok_b])?;
    let pair = super::score::token_logits_at_last(dec, prompts, &[tok_a, tok_b], pad_id, adapters)?;
    logit_gap(&pair)
}

/// `(b, 2)` logits → `l_A − l_B`, `(b,)`.
fn logit_gap(pair: &Tensor) -> Result<Tensor> {
    let la = pair.narrow(1, 0, 1)?.squeeze(1)?;
    let lb = pair.narrow(1, 1, 1)?.squeeze(1)?;
    (la - lb).context("verdict logit gap")
}
