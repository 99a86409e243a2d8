//! The consistency loss between the two internal reward models, and the dynamic
//! selection rule.
//!
//! Per pair, with `p = P_irm(y1 ≻ y2)` and `q = P_grm(y1 ≻ y2)`:
//!
//! * [`ConsistencyKind::SymmetricKl`]:
//!   `L_con = ½·[KL(B(p)‖B(q)) + KL(B(q)‖B(p))] + γ·[H(B(p)) + H(B(q))]`. The symmetric KL
//!   of two Bernoullis is `(p − q)·(logit p − logit q)`, which is how it is computed
//!   (no `0·log 0`, no division).
//! * [`ConsistencyKind::AgreementNll`]: `−log(p·q + (1−p)·(1−q))`, the negative
//!   log-probability that two independent draws agree (γ is ignored).
//!
//! [`ConsistencyGrad::IrmOnly`] detaches q inside `L_con`, so the consistency loss moves
//! only the implicit reward; `Both` (the default) moves both.
//!
//! Selection ([`select_pair`]): a pair is consistent iff `(p−½)(q−½) > 0` and
//! `min(|p−½|, |q−½|) ≥ δ`; its label is the direction both agree on. Exactly ½ on
//! either side is never consistent, whatever δ.

use candle_core::{Result, Tensor};

use super::bernoulli::LogBernoulli;
use super::ops::logaddexp;

/// Which consistency loss to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyKind {
    /// Symmetric KL plus γ times the two entropies (default).
    #[default]
    SymmetricKl,
    /// `−log(p·q + (1−p)(1−q))`.
    AgreementNll,
}

/// Which reward model the consistency loss trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyGrad {
    /// Gradient through both p (IRM) and q (GRM).
    #[default]
    Both,
    /// q is detached: only the IRM path is trained by `L_con`.
    IrmOnly,
}

/// `H(B(p)) = −p·log p − (1−p)·log(1−p)`, `(n,)`.
pub fn entropy(p: &LogBernoulli) -> Result<Tensor> {
    let a = (p.log_p.exp()? * &p.log_p)?;
    let b = (p.log_not_p.exp()? * &p.log_not_p)?;
    (a + b)?.neg()
}

/// `KL(B(p)‖B(q)) + KL(B(q)‖B(p)) = (p − q)·(logit p − logit q)`, `(n,)`.
pub fn symmetric_kl(p: &LogBernoulli, q: &LogBernoulli) -> Result<Tensor> {
    // p − q averaged over its two float forms, (p − q) and ((1−q) − (1−p)), which are
    // accurate near 0 and near 1 respectively.
    let diff_lo = (p.log_p.exp()? - q.log_p.exp()?)?;
    let diff_hi = (q.log_not_p.exp()? - p.log_not_p.exp()?)?;
    let diff = ((diff_lo + diff_hi)? * 0.5)?;
    let logit_p = (&p.log_p - &p.log_not_p)?;
    let logit_q = (&q.log_p - &q.log_not_p)?;
    diff * (logit_p - logit_q)?
}

/// `−log(p·q + (1−p)·(1−q))`, `(n,)`.
pub fn agreement_nll(p: &LogBernoulli, q: &LogBernoulli) -> Result<Tensor> {
    let agree = (&p.log_p + &q.log_p)?;
    let disagree_both = (&p.log_not_p + &q.log_not_p)?;
    logaddexp(&agree, &disagree_both)?.neg()
}

/// Per-pair consistency loss `(n,)` (see the module docs).
pub fn consistency_loss(
    p: &LogBernoulli,
    q: &LogBernoulli,
    kind: ConsistencyKind,
    grad: ConsistencyGrad,
    gamma: f64,
) -> Result<Tensor> {
    let q_used;
    let q = match grad {
        ConsistencyGrad::Both => q,
        ConsistencyGrad::IrmOnly => {
            q_used = q.detach();
            &q_used
        }
    };
    match kind {
        ConsistencyKind::AgreementNll => agreement_nll(p, q),
        ConsistencyKind::SymmetricKl => {
            let kl = (symmetric_kl(p, q)? * 0.5)?;
            if gamma == 0.0 {
                Ok(kl)
            } else {
                kl + ((entropy(p)? + entropy(q)?)? * gamma)?
            }
        }
    }
}

/// The response both reward models prefer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Preferred {
    /// `y1 ≻ y2`.
    Y1,
    /// `y2 ≻ y1`.
    Y2,
}

impl Preferred {
    /// The label as stored in tables: `y1` | `y2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Preferred::Y1 => "y1",
            Preferred::Y2 => "y2",
        }
    }
    /// Inverse of [`Preferred::as_str`].
    pub fn parse(s: &str) -> Option<Preferred> {
        [Preferred::Y1, Preferred::Y2]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// The selection rule: `Some(direction)` iff `(p−½)(q−½) > 0` and
/// `min(|p−½|, |q−½|) ≥ δ`; `None` (not consistent) otherwise, including any exact ½.
pub fn select_pair(p: f64, q: f64, delta: f64) -> Option<Preferred> {
    let (dp, dq) = (p - 0.5, q - 0.5);
    let agree = (dp > 0.0 && dq > 0.0) || (dp < 0.0 && dq < 0.0);
    if !agree || dp.abs().min(dq.abs()) < delta {
        return None;
    }
    Some(if dp > 0.0 {
        Preferred::Y1
    } else {
        Preferred::Y2
    })
}

/// Whether p and q are strictly on the same side of ½ (the selection rule with δ = 0).
pub fn same_side(p: f64, q: f64) -> bool {
    select_pair(p, q, 0.0).is_some()
}
