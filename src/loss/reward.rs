//! The Bradley–Terry reward-model loss, as TRL's `RewardTrainer.compute_loss` (TRL 1.16):
//!
//! ```text
//! loss = mean_i −log σ(r_c,i − r_l,i − m_i)  +  η·mean_i (r_c,i + r_l,i)²
//! ```
//!
//! `r_c, r_l` (`(n,)`) are the rewards of the chosen and rejected sequences, `m` an optional
//! per-pair margin (TRL's `margin` column; none is `m = 0`), `η` TRL's
//! `center_rewards_coefficient` (off when `None`; TRL suggests 0.01), which keeps the
//! rewards near zero without changing their differences. Computed in f64 (the gradient
//! flows back through the conversion). Accuracy is TRL's: the fraction with `r_c > r_l`
//! (a tie counts as wrong).

use candle_core::{DType, Result, Tensor};

use super::ops::log_sigmoid;

/// The mean Bradley–Terry loss (a scalar tensor) of a batch of pairs.
pub fn bradley_terry(
    chosen: &Tensor,
    rejected: &Tensor,
    margin: Option<&Tensor>,
    center_coefficient: Option<f64>,
) -> Result<Tensor> {
    let (c, r) = (chosen.to_dtype(DType::F64)?, rejected.to_dtype(DType::F64)?);
    let mut z = (&c - &r)?;
    if let Some(m) = margin {
        z = (z - m.to_dtype(DType::F64)?)?;
    }
    let mut loss = log_sigmoid(&z)?.mean_all()?.neg()?;
    if let Some(eta) = center_coefficient {
        loss = (loss + ((&c + &r)?.sqr()?.mean_all()? * eta)?)?;
    }
    Ok(loss)
}

/// TRL's `accuracy`: the fraction of pairs with `r_c > r_l` (`None` for no pairs).
pub fn accuracy(chosen: &[f64], rejected: &[f64]) -> Option<f64> {
    let n = chosen.len();
    let right = chosen.iter().zip(rejected).filter(|(c, r)| c > r).count();
    (n > 0).then(|| right as f64 / n as f64)
}
