//! The training losses of docs/algorithm.md, on candle tensors, differentiable end to end.
//!
//! Shapes: every per-pair input and output is a 1-D tensor `(n,)` over the pairs of a
//! batch; `logπ(y|x)` is the sum of the response tokens' log-probs (EOS included).
//!
//! * [`dpo`]: TRL's `sigmoid` DPO loss and implicit rewards, and its metrics.
//! * [`bernoulli`]: a preference probability kept as `(log p, log(1−p))`, built from the
//!   IRM (`p = σ(β[(lπ(y1)−lref(y1)) − (lπ(y2)−lref(y2))])`) or the GRM (pairwise with
//!   swap averaging `q = ½[P(A|y1,y2) + 1 − P(A|y2,y1)]`, or pointwise `σ(Δs/τ)`).
//! * [`consistency`]: `L_con` (symmetric KL + γ·entropies, or `agreement_nll`) and the
//!   dynamic selection rule.
//! * [`cream`]: Kendall's τ_b of two rankings, CREAM's consistency rate and its
//!   consistency-weighted DPO loss.
//! * [`meta_judge`]: Meta-Rewarding's rule for a judge pair from the meta-judge's verdicts.
//! * [`reward`]: the Bradley–Terry loss of a reward model (TRL's `RewardTrainer`).
//! * [`scir`]: the total `L = mean_consistent(L_dpo) + λ·mean_all(L_con)` with metrics.
//!
//! Numerics: probabilities are carried in log space and every log/exp goes through a
//! `softplus`/`logaddexp` that never overflows, so p or q at 0 or 1 (logits of ±1000)
//! give finite losses and gradients. Ties are exact: a pair whose two responses score
//! the same gets log-odds exactly 0 (`p = ½`), which the selection rule never counts as
//! consistent. [`scir::scir_loss`] computes in f64 (inputs are converted; the gradient
//! flows back through the conversion), so losses match references to ~1e-12.

pub mod bernoulli;
pub mod consistency;
pub mod cream;
pub mod dpo;
pub mod meta_judge;
pub mod ops;
pub mod reward;
pub mod scir;

pub use bernoulli::LogBernoulli;
pub use consistency::{ConsistencyGrad, ConsistencyKind, Preferred, select_pair};
pub use dpo::{DpoMetrics, DpoOutput, dpo_sigmoid, dpo_sigmoid_offset};
pub use scir::{
    Lengths, PairLogps, Pick, ScirLossConfig, ScirLossOutput, StepMetrics, scir_loss,
    scir_loss_with,
};
