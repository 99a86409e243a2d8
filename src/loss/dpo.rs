//! TRL's `sigmoid` DPO loss, implicit rewards and metrics.
//!
//! For chosen `c` and rejected `r` responses, policy log-probs `πc, πr` and reference
//! log-probs `ρc, ρr` (shapes `(n,)`), as TRL's `DPOTrainer` with `loss_type="sigmoid"`
//! (TRL 1.16 `_compute_loss`; ε = 0 is exactly that, ε > 0 is the conservative-DPO
//! label smoothing older TRL versions applied to `sigmoid`):
//!
//! ```text
//! logits          = (πc − ρc) − (πr − ρr)
//! losses          = −log σ(β·logits)·(1 − ε) − log σ(−β·logits)·ε     (ε = label smoothing)
//! chosen_rewards  = β·(πc − ρc)   (detached)
//! rejected_rewards= β·(πr − ρr)   (detached)
//! ```
//!
//! Metrics as TRL logs them: `rewards/chosen`, `rewards/rejected` (means),
//! `rewards/accuracies` (fraction with chosen > rejected reward), `rewards/margins`
//! (mean of chosen − rejected), `logps/chosen`, `logps/rejected` (mean policy log-probs).
//! Over an empty batch every metric is `None` (TRL would log NaN).

use candle_core::{DType, Result, Tensor};

use super::ops::log_sigmoid;

/// Per-pair DPO outputs, `(n,)` each.
#[derive(Debug, Clone)]
pub struct DpoOutput {
    /// The per-pair loss (differentiable).
    pub losses: Tensor,
    /// `β·(πc − ρc)`, detached.
    pub chosen_rewards: Tensor,
    /// `β·(πr − ρr)`, detached.
    pub rejected_rewards: Tensor,
}

/// TRL's sigmoid DPO (see the module docs). `label_smoothing` is cDPO's ε (0: plain DPO).
pub fn dpo_sigmoid(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    ref_chosen: &Tensor,
    ref_rejected: &Tensor,
    beta: f64,
    label_smoothing: f64,
) -> Result<DpoOutput> {
    let logps = [policy_chosen, policy_rejected, ref_chosen, ref_rejected];
    dpo_sigmoid_offset(logps, beta, label_smoothing, None)
}

/// [`dpo_sigmoid`] of `[πc, πr, ρc, ρr]` with `offset` (`(n,)`) added to the β-scaled
/// logits: R-DPO (Park et al. 2024, Eq. 9) is `offset = α·(|y_c| − |y_r|)`,
/// `loss = −log σ(β·logits + α·(|y_c| − |y_r|))`. The rewards stay DPO's.
pub fn dpo_sigmoid_offset(
    [policy_chosen, policy_rejected, ref_chosen, ref_rejected]: [&Tensor; 4],
    beta: f64,
    label_smoothing: f64,
    offset: Option<&Tensor>,
) -> Result<DpoOutput> {
    let chosen_logratios = (policy_chosen - ref_chosen)?;
    let rejected_logratios = (policy_rejected - ref_rejected)?;
    let logits = (&chosen_logratios - &rejected_logratios)?;
    let mut scaled = (logits * beta)?;
    if let Some(offset) = offset {
        let offset = offset.to_dtype(scaled.dtype())?;
        scaled = (scaled + offset)?;
    }
    let mut losses = (log_sigmoid(&scaled)? * -(1.0 - label_smoothing))?;
    if label_smoothing != 0.0 {
        losses = (losses - (log_sigmoid(&scaled.neg()?)? * label_smoothing)?)?;
    }
    Ok(DpoOutput {
        losses,
        chosen_rewards: (chosen_logratios * beta)?.detach(),
        rejected_rewards: (rejected_logratios * beta)?.detach(),
    })
}

/// TRL's DPO metrics over a batch (`None` for an empty one).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DpoMetrics {
    /// `rewards/chosen`.
    pub rewards_chosen: Option<f64>,
    /// `rewards/rejected`.
    pub rewards_rejected: Option<f64>,
    /// `rewards/accuracies`.
    pub rewards_accuracies: Option<f64>,
    /// `rewards/margins`.
    pub rewards_margins: Option<f64>,
    /// `logps/chosen`.
    pub logps_chosen: Option<f64>,
    /// `logps/rejected`.
    pub logps_rejected: Option<f64>,
}

impl DpoMetrics {
    /// Metrics of `out` with the policy log-probs it was computed from.
    pub fn compute(
        out: &DpoOutput,
        policy_chosen: &Tensor,
        policy_rejected: &Tensor,
    ) -> Result<Self> {
        let host =
            |t: &Tensor| -> Result<Vec<f64>> { t.detach().to_dtype(DType::F64)?.to_vec1::<f64>() };
        let (rc, rr) = (host(&out.chosen_rewards)?, host(&out.rejected_rewards)?);
        let (pc, pr) = (host(policy_chosen)?, host(policy_rejected)?);
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let acc: Vec<f64> = rc
            .iter()
            .zip(&rr)
            .map(|(c, r)| if c > r { 1.0 } else { 0.0 })
            .collect();
        let margins: Vec<f64> = rc.iter().zip(&rr).map(|(c, r)| c - r).collect();
        Ok(Self {
            rewards_chosen: mean(&rc),
            rewards_rejected: mean(&rr),
            rewards_accuracies: mean(&acc),
            rewards_margins: mean(&margins),
            logps_chosen: mean(&pc),
            logps_rejected: mean(&pr),
        })
    }

    /// `(TRL name, value)` in a fixed order.
    pub fn named(&self) -> [(&'static str, Option<f64>); 6] {
        [
            ("rewards/chosen", self.rewards_chosen),
            ("rewards/rejected", self.rewards_rejected),
            ("rewards/accuracies", self.rewards_accuracies),
            ("rewards/margins", self.rewards_margins),
            ("logps/chosen", self.logps_chosen),
            ("logps/rejected", self.logps_rejected),
        ]
    }
}
