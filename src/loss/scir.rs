//! The SCIR training objective for one batch of pairs:
//! `L = mean_consistent(L_dpo) + λ·mean_all(L_con)`.
//!
//! 1. `p` (IRM, against the IRM reference and with `irm_beta`) and `q` (GRM, given by
//!    the caller as a [`LogBernoulli`], pairwise or pointwise) under the current θ.
//! 2. Selection without gradient: [`select_pair`] on the host values of p and q.
//! 3. DPO (TRL sigmoid, `beta`, DPO reference = the cached Mt log-probs) on the
//!    consistent pairs, chosen = the agreed response. The mean over an empty consistent
//!    set is defined as 0 (that batch then trains only through `L_con`).
//! 4. `L_con` on all pairs ([`consistency_loss`]).
//!
//! Everything is computed in f64 (inputs are converted; gradients flow back through the
//! conversion to the inputs' dtype). For gradient accumulation with exact global means,
//! use the sums and counts in [`ScirLossOutput`] instead of `loss`.
//!
//! Metrics: TRL's DPO metrics over the selected pairs (`None` when none is selected),
//! `loss`, `loss/dpo` (the mean over selected pairs, 0 when none), `loss/consistency`
//! (mean over all pairs, before λ), `consistency/selected_frac` (selected / all) and
//! `consistency/agreement` (fraction of pairs with p and q strictly on the same side of
//! ½, i.e. the selection rule with δ = 0), and `kl/reference`: the mean over all 2n
//! responses of `logπref(y) − logπθ(y)`. The responses were sampled from Mt = πref, so
//! this is an unbiased estimate of `KL(πref ‖ πθ)` per prompt: a run drifting away from
//! its reference (a collapse) shows up here first.

use anyhow::{Result, bail};
use candle_core::{DType, Tensor};

use super::bernoulli::LogBernoulli;
use super::consistency::{
    ConsistencyGrad, ConsistencyKind, Preferred, consistency_loss, same_side, select_pair,
};
use super::dpo::{DpoMetrics, dpo_sigmoid_offset};

/// Per-pair log-probs of one batch; every tensor is `(n,)`.
#[derive(Debug, Clone)]
pub struct PairLogps {
    /// `logπθ(y1|x)`, differentiable.
    pub policy_y1: Tensor,
    /// `logπθ(y2|x)`, differentiable.
    pub policy_y2: Tensor,
    /// `logπref(y1|x)` for DPO (Mt, cached by the score stage).
    pub dpo_ref_y1: Tensor,
    /// `logπref(y2|x)` for DPO.
    pub dpo_ref_y2: Tensor,
    /// `logπ_irm_ref(y1|x)` for the IRM (by default the initial model).
    pub irm_ref_y1: Tensor,
    /// `logπ_irm_ref(y2|x)`.
    pub irm_ref_y2: Tensor,
    /// Response lengths, for length control (`None`: plain SCIR).
    pub lengths: Option<Lengths>,
}

/// Length control of one batch: the responses' lengths in tokens (`(n,)` each) and the
/// knobs that use them.
#[derive(Debug, Clone)]
pub struct Lengths {
    /// `|y1|`.
    pub y1: Tensor,
    /// `|y2|`.
    pub y2: Tensor,
    /// The IRM compares mean per-token log-ratios, `(lπ(y) − lref(y)) / |y|` (score-irm's
    /// `norm: mean`), instead of sums.
    pub irm_mean: bool,
    /// R-DPO's α: DPO's β-scaled logits get `α·(|y_c| − |y_r|)` ([`dpo_sigmoid_offset`]).
    pub alpha: f64,
}

/// The knobs of the objective (docs/algorithm.md).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScirLossConfig {
    /// DPO β.
    pub beta: f64,
    /// IRM β (in `p = σ(β·Δ)`); scir uses the same β for both by default.
    pub irm_beta: f64,
    /// λ: weight of the consistency loss.
    pub lambda: f64,
    /// γ: weight of the entropy ("confidence") term of the symmetric-KL loss.
    pub gamma: f64,
    /// δ: minimum distance of both p and q from ½ for a pair to be selected.
    pub delta: f64,
    /// Which consistency loss.
    pub kind: ConsistencyKind,
    /// Which reward model the consistency loss trains.
    pub grad: ConsistencyGrad,
}

impl ScirLossConfig {
    /// Check ranges; messages name the knob.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("beta", self.beta), ("irm_beta", self.irm_beta)] {
            if !(v.is_finite() && v > 0.0) {
                bail!(crate::user_err!(
                    "{name} must be a positive number, got {v}"
                ));
            }
        }
        for (name, v) in [("lambda", self.lambda), ("gamma", self.gamma)] {
            if !(v.is_finite() && v >= 0.0) {
                bail!(crate::user_err!("{name} must be a number ≥ 0, got {v}"));
            }
        }
        if !(self.delta.is_finite() && (0.0..0.5).contains(&self.delta)) {
            bail!(crate::user_err!(
                "delta must be in [0, 0.5), got {}",
                self.delta
            ));
        }
        Ok(())
    }
}

/// The objective, its parts and what was selected.
#[derive(Debug, Clone)]
pub struct ScirLossOutput {
    /// `mean_consistent(L_dpo) + λ·mean_all(L_con)`, a scalar (f64).
    pub loss: Tensor,
    /// `Σ_consistent L_dpo` (scalar; 0 when none).
    pub dpo_sum: Tensor,
    /// `Σ_all L_con` (scalar).
    pub con_sum: Tensor,
    /// Per pair: the agreed label, `None` when not consistent.
    pub selection: Vec<Option<Preferred>>,
    /// Host values of p and q per pair.
    pub p: Vec<f64>,
    /// See `p`.
    pub q: Vec<f64>,
    /// Step metrics.
    pub metrics: StepMetrics,
}

/// Per-step metrics (host values).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepMetrics {
    /// `loss`.
    pub loss: f64,
    /// `loss/dpo`.
    pub loss_dpo: f64,
    /// `loss/consistency` (before λ).
    pub loss_consistency: f64,
    /// `consistency/selected_frac`.
    pub selected_frac: f64,
    /// `consistency/agreement`.
    pub agreement: f64,
    /// `kl/reference`.
    pub kl_reference: f64,
    /// TRL's DPO metrics over the selected pairs.
    pub dpo: DpoMetrics,
}

impl StepMetrics {
    /// `(name, value)` in a fixed order (TRL names first).
    pub fn named(&self) -> Vec<(&'static str, Option<f64>)> {
        let mut out = vec![("loss", Some(self.loss))];
        out.extend(self.dpo.named());
        out.extend([
            ("loss/dpo", Some(self.loss_dpo)),
            ("loss/consistency", Some(self.loss_consistency)),
            ("consistency/selected_frac", Some(self.selected_frac)),
            ("consistency/agreement", Some(self.agreement)),
            ("kl/reference", Some(self.kl_reference)),
        ]);
        out
    }
}

fn f64s(t: &Tensor) -> candle_core::Result<Tensor> {
    t.to_dtype(DType::F64)
}

/// The SCIR objective for one batch (see the module docs).
pub fn scir_loss(
    logps: &PairLogps,
    q: &LogBernoulli,
    cfg: &ScirLossConfig,
) -> Result<ScirLossOutput> {
    scir_loss_with(logps, q, cfg, Pick::Dynamic)
}

/// How [`scir_loss_with`] picks the pairs DPO trains on and their labels.
#[derive(Debug, Clone, Copy)]
pub enum Pick<'a> {
    /// [`select_pair`] on this step's p and q (the paper's method).
    Dynamic,
    /// As `Dynamic`, except the pairs with `Some(label)` here, which keep that label (a
    /// length control's forced label); one entry per pair.
    DynamicExcept(&'a [Option<Preferred>]),
    /// These labels, chosen once before training (the ablation "static selection"; `None`:
    /// no DPO for that pair); one entry per pair.
    Fixed(&'a [Option<Preferred>]),
}

/// [`scir_loss`] with the pairs picked as `pick` says.
pub fn scir_loss_with(
    logps: &PairLogps,
    q: &LogBernoulli,
    cfg: &ScirLossConfig,
    pick: Pick,
) -> Result<ScirLossOutput> {
    cfg.validate()?;
    let (py1, py2) = (f64s(&logps.policy_y1)?, f64s(&logps.policy_y2)?);
    let n = py1.elem_count();
    if n == 0 || q.len() != n {
        bail!(
            "scir_loss: {n} pairs of log-probs but {} GRM preferences (need the same, > 0)",
            q.len()
        );
    }
    let q = LogBernoulli {
        log_p: f64s(&q.log_p)?,
        log_not_p: f64s(&q.log_not_p)?,
    };
    let p = irm_preference(logps, &py1, &py2, cfg.irm_beta)?;
    let (p_host, q_host) = (p.host_probs()?, q.host_probs()?);
    let dynamic = |i: usize| select_pair(p_host[i], q_host[i], cfg.delta);
    let selection: Vec<Option<Preferred>> = match pick {
        Pick::Fixed(f) | Pick::DynamicExcept(f) if f.len() != n => {
            bail!("scir_loss: {} fixed labels for {n} pairs", f.len())
        }
        Pick::Fixed(f) => f.to_vec(),
        Pick::DynamicExcept(f) => (0..n).map(|i| f[i].or_else(|| dynamic(i))).collect(),
        Pick::Dynamic => (0..n).map(dynamic).collect(),
    };

    let con = consistency_loss(&p, &q, cfg.kind, cfg.grad, cfg.gamma)?;
    let con_sum = con.sum_all()?;
    let (dpo_sum, dpo_metrics, k) = selected_dpo(logps, &py1, &py2, &selection, cfg.beta)?;
    let dpo_mean = if k == 0 {
        dpo_sum.clone()
    } else {
        (&dpo_sum / k as f64)?
    };
    let con_mean = (&con_sum / n as f64)?;
    let loss = (&dpo_mean + (&con_mean * cfg.lambda)?)?;
    let metrics = StepMetrics {
        loss: loss.to_scalar::<f64>()?,
        loss_dpo: dpo_mean.to_scalar::<f64>()?,
        loss_consistency: con_mean.to_scalar::<f64>()?,
        selected_frac: k as f64 / n as f64,
        agreement: agreement(&p_host, &q_host),
        kl_reference: reference_kl(&[&py1, &py2], &[&logps.dpo_ref_y1, &logps.dpo_ref_y2])?,
        dpo: dpo_metrics,
    };
    Ok(ScirLossOutput {
        loss,
        dpo_sum,
        con_sum,
        selection,
        p: p_host,
        q: q_host,
        metrics,
    })
}

/// The IRM's `p` under θ: summed log-ratios, or per-token means with `Lengths::irm_mean`.
fn irm_preference(
    logps: &PairLogps,
    py1: &Tensor,
    py2: &Tensor,
    beta: f64,
) -> Result<LogBernoulli> {
    let (r1, r2) = (f64s(&logps.irm_ref_y1)?, f64s(&logps.irm_ref_y2)?);
    match &logps.lengths {
        Some(l) if l.irm_mean => {
            let (n1, n2) = (f64s(&l.y1)?, f64s(&l.y2)?);
            let per = |x: &Tensor, n: &Tensor| x.broadcast_div(n);
            Ok(LogBernoulli::irm(
                &per(py1, &n1)?,
                &per(py2, &n2)?,
                &per(&r1, &n1)?,
                &per(&r2, &n2)?,
                beta,
            )?)
        }
        _ => Ok(LogBernoulli::irm(py1, py2, &r1, &r2, beta)?),
    }
}

/// Fraction of pairs with p and q strictly on the same side of ½.
fn agreement(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).filter(|(a, b)| same_side(**a, **b)).count() as f64 / p.len() as f64
}

/// Mean of `reference − policy` log-probs over all responses (see the module docs).
fn reference_kl(policy: &[&Tensor], reference: &[&Tensor]) -> Result<f64> {
    let (mut sum, mut count) = (0f64, 0usize);
    for (pol, refr) in policy.iter().zip(reference) {
        let diff = (f64s(refr)? - pol.detach())?.to_vec1::<f64>()?;
        count += diff.len();
        sum += diff.iter().sum::<f64>();
    }
    Ok(sum / count as f64)
}

/// `(Σ L_dpo over selected pairs, their TRL metrics, count)`.
fn selected_dpo(
    logps: &PairLogps,
    py1: &Tensor,
    py2: &Tensor,
    selection: &[Option<Preferred>],
    beta: f64,
) -> Result<(Tensor, DpoMetrics, usize)> {
    let idx: Vec<u32> = (0..selection.len() as u32)
        .filter(|&i| selection[i as usize].is_some())
        .collect();
    let k = idx.len();
    if k == 0 {
        return Ok((Tensor::new(0f64, py1.device())?, DpoMetrics::default(), 0));
    }
    let y1_wins: Vec<u8> = idx
        .iter()
        .map(|&i| u8::from(selection[i as usize] == Some(Preferred::Y1)))
        .collect();
    let device = py1.device();
    let idx = Tensor::new(idx.as_slice(), device)?;
    let mask = Tensor::new(y1_wins.as_slice(), device)?;
    let pick = |a: &Tensor, b: &Tensor| -> candle_core::Result<(Tensor, Tensor)> {
        let (a, b) = (a.index_select(&idx, 0)?, b.index_select(&idx, 0)?);
        Ok((mask.where_cond(&a, &b)?, mask.where_cond(&b, &a)?))
    };
    let (pc, pr) = pick(py1, py2)?;
    let (rc, rr) = pick(&f64s(&logps.dpo_ref_y1)?, &f64s(&logps.dpo_ref_y2)?)?;
    let offset = match &logps.lengths {
        Some(l) if l.alpha != 0.0 => {
            let (lc, lr) = pick(&f64s(&l.y1)?, &f64s(&l.y2)?)?;
            Some(((lc - lr)? * l.alpha)?)
        }
        _ => None,
    };
    let out = dpo_sigmoid_offset([&pc, &pr, &rc, &rr], beta, 0.0, offset.as_ref())?;
    let metrics = DpoMetrics::compute(&out, &pc, &pr)?;
    Ok((out.losses.sum_all()?, metrics, k))
}
