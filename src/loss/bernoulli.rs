//! A batch of Bernoulli preference probabilities in log space, and how the two internal
//! reward models produce one.
//!
//! [`LogBernoulli`] holds `log p` and `log(1 − p)` as two `(n,)` tensors. Keeping both
//! (instead of `p`) makes KL, entropies and `−log(agreement)` finite and accurate for p
//! at 0 or 1, and makes "exactly ½" an exact test (`log p == log(1−p)`).

use candle_core::{Result, Tensor};

use super::ops::{log_sigmoid, logaddexp};

/// `(log p, log(1 − p))` for a batch of pairs; `p = P(y1 ≻ y2)`.
#[derive(Debug, Clone)]
pub struct LogBernoulli {
    /// `log p`, `(n,)`.
    pub log_p: Tensor,
    /// `log(1 − p)`, `(n,)`.
    pub log_not_p: Tensor,
}

impl LogBernoulli {
    /// `p = σ(z)` for log-odds `z`.
    pub fn from_logit(z: &Tensor) -> Result<Self> {
        Ok(Self {
            log_p: log_sigmoid(z)?,
            log_not_p: log_sigmoid(&z.neg()?)?,
        })
    }

    /// The IRM's preference `p = σ(β·[(lπ(y1) − lref(y1)) − (lπ(y2) − lref(y2))])`.
    pub fn irm(
        policy_y1: &Tensor,
        policy_y2: &Tensor,
        ref_y1: &Tensor,
        ref_y2: &Tensor,
        beta: f64,
    ) -> Result<Self> {
        let z = ((policy_y1 - ref_y1)? - (policy_y2 - ref_y2)?)?;
        Self::from_logit(&(z * beta)?)
    }

    /// The pairwise GRM's preference from verdict logit gaps `l_A − l_B`
    /// (`P(A) = softmax(l_A, l_B)[0] = σ(l_A − l_B)`): `gap_ab` with `A = y1, B = y2`, and,
    /// with position debiasing, `gap_ba` with the order swapped:
    /// `q = ½·[P(A | y1,y2) + 1 − P(A | y2,y1)]`; without, `q = P(A | y1,y2)`.
    pub fn grm_pairwise(gap_ab: &Tensor, gap_ba: Option<&Tensor>) -> Result<Self> {
        let first = Self::from_logit(gap_ab)?;
        match gap_ba {
            None => Ok(first),
            Some(ba) => Ok(first.average(&Self::from_logit(ba)?.flip())?),
        }
    }

    /// The pointwise GRM's preference `q = σ((s(y1) − s(y2)) / τ)` from expected scores.
    pub fn grm_pointwise(score_y1: &Tensor, score_y2: &Tensor, temperature: f64) -> Result<Self> {
        Self::from_logit(&((score_y1 - score_y2)? / temperature)?)
    }

    /// The pointwise GRM's expected score `s(y) = Σ_k softmax(score logits)_k · value_k`
    /// from the logits of the score tokens at the answer position, `(b, k)` → `(b,)`
    /// (differentiable; `values[k]` is the score token k stands for).
    pub fn expected_score(score_logits: &Tensor, values: &[f64]) -> Result<Tensor> {
        let (_, k) = score_logits.dims2()?;
        if k != values.len() {
            candle_core::bail!(
                "expected_score: {k} score logits per row but {} values",
                values.len()
            );
        }
        let probs = candle_nn::ops::softmax(score_logits, 1)?;
        let v = Tensor::new(values, score_logits.device())?.to_dtype(score_logits.dtype())?;
        probs.broadcast_mul(&v.unsqueeze(0)?)?.sum(1)
    }

    /// The complementary event: `p ↦ 1 − p`.
    pub fn flip(self) -> Self {
        Self {
            log_p: self.log_not_p,
            log_not_p: self.log_p,
        }
    }

    /// The equal mixture `½·(p + p′)`, computed in log space (symmetric bit for bit).
    pub fn average(&self, other: &Self) -> Result<Self> {
        let ln2 = std::f64::consts::LN_2;
        Ok(Self {
            log_p: (logaddexp(&self.log_p, &other.log_p)? - ln2)?,
            log_not_p: (logaddexp(&self.log_not_p, &other.log_not_p)? - ln2)?,
        })
    }

    /// The same probabilities cut from the graph (no gradient flows back).
    pub fn detach(&self) -> Self {
        Self {
            log_p: self.log_p.detach(),
            log_not_p: self.log_not_p.detach(),
        }
    }

    /// `p` as a tensor (differentiable).
    pub fn prob(&self) -> Result<Tensor> {
        self.log_p.exp()
    }

    /// Host values of `p`, computed as `σ(log p − log(1−p))` so a tie is exactly 0.5.
    pub fn host_probs(&self) -> Result<Vec<f64>> {
        let lp = self
            .log_p
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        let lq = self
            .log_not_p
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        Ok(lp.iter().zip(&lq).map(|(a, b)| sigmoid(a - b)).collect())
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.log_p.elem_count()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `σ(z)` on the host, exact at 0 and never overflowing.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        z.exp() / (1.0 + z.exp())
    }
}
