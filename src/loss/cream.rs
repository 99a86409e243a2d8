//! CREAM's consistency-regularised DPO (Wang et al., ICLR 2025): the agreement of two
//! rankings of a prompt's responses as Kendall's τ, and the DPO loss that trusts a label
//! only as far as the rankings agree.
//!
//! ```text
//! τ_b   = (n_c − n_d) / √((n₀ − n_x)(n₀ − n_y))     n₀ = n(n−1)/2 pairs of responses,
//!         n_c concordant, n_d discordant, n_x (n_y) tied in the first (second) ranking
//! C     = (τ + 1) / 2                                  ∈ [0, 1]
//! loss  = C·L_dpo(y⁺, y⁻) + (1 − C)·L_dpo(y⁻, y⁺)
//!       = −C·log σ(β·z) − (1 − C)·log σ(−β·z)          z = (πc − ρc) − (πr − ρr)
//! ```
//!
//! τ_b (scipy's `kendalltau` default) counts a pair tied in either ranking as neither
//! concordant nor discordant and shrinks the denominator accordingly, so two identical
//! responses — the same tokens, the same rewards under any model — neither agree nor
//! disagree. It is undefined (`None`) when one ranking is all ties. The loss is TRL's
//! sigmoid DPO with per-pair label smoothing ε = 1 − C ([`super::dpo`]); at C = ½ it is
//! symmetric and its gradient at z = 0 vanishes.

use candle_core::{Result, Tensor};

use super::ops::log_sigmoid;

/// Kendall's τ_b of two scorings of the same items (`None` when `x` or `y` has fewer than
/// two distinct values: τ is undefined there).
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(
        x.len(),
        y.len(),
        "kendall_tau_b: scorings of different lengths"
    );
    let (mut concordant, mut discordant, mut tied_x, mut tied_y) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let dx = x[i].total_cmp(&x[j]) as i64;
            let dy = y[i].total_cmp(&y[j]) as i64;
            tied_x += i64::from(dx == 0);
            tied_y += i64::from(dy == 0);
            match dx * dy {
                1 => concordant += 1,
                -1 => discordant += 1,
                _ => {}
            }
        }
    }
    let n = x.len() as i64;
    let pairs = n * (n - 1) / 2;
    let denominator = ((pairs - tied_x) as f64 * (pairs - tied_y) as f64).sqrt();
    (denominator > 0.0).then(|| (concordant - discordant) as f64 / denominator)
}

/// CREAM's consistency rate `C = (τ + 1)/2`.
pub fn consistency_rate(tau: f64) -> f64 {
    (tau + 1.0) / 2.0
}

/// The CREAM loss per pair, `(n,)`, from `[πc, πr, ρc, ρr]` (the label's chosen and
/// rejected responses) and each pair's consistency `C` (`(n,)`, in [0, 1]); computed in
/// the policy's dtype.
pub fn cream_dpo(
    [policy_chosen, policy_rejected, ref_chosen, ref_rejected]: [&Tensor; 4],
    beta: f64,
    consistency: &Tensor,
) -> Result<Tensor> {
    let logits = ((policy_chosen - ref_chosen)? - (policy_rejected - ref_rejected)?)?;
    let scaled = (logits * beta)?;
    let c = consistency.to_dtype(scaled.dtype())?;
    let trusted = (log_sigmoid(&scaled)? * &c)?;
    let reversed = (log_sigmoid(&scaled.neg()?)? * (1.0 - &c)?)?;
    (trusted + reversed)?.neg()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x = (1, 2, 2, 3), y = (1, 3, 2, 2). Pairs (i<j): (0,1) c, (0,2) c, (0,3) c, (1,2) x-tie,
    /// (1,3) d, (2,3) y-tie → n_c 3, n_d 1, n_x 1, n_y 1, n₀ 6:
    /// τ_b = 2/√(5·5) = 0.4 (scipy.stats.kendalltau gives 0.4).
    #[test]
    fn tau_b_with_ties_by_hand() {
        let tau = kendall_tau_b(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 2.0]).unwrap();
        assert!((tau - 0.4).abs() < 1e-12, "{tau}");
        assert!((consistency_rate(tau) - 0.7).abs() < 1e-12);
    }

    /// A pair tied in both rankings (two identical responses) counts in both tie counts:
    /// x = (1, 1, 2), y = (5, 5, 9): n_c 2, n_d 0, n_x = n_y = 1, τ_b = 2/√(2·2) = 1.
    #[test]
    fn identical_responses_neither_agree_nor_disagree() {
        let tau = kendall_tau_b(&[1.0, 1.0, 2.0], &[5.0, 5.0, 9.0]).unwrap();
        assert!((tau - 1.0).abs() < 1e-12, "{tau}");
        let reversed = kendall_tau_b(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap();
        assert!((reversed + 1.0).abs() < 1e-12);
    }

    #[test]
    fn tau_is_undefined_when_a_ranking_is_all_ties() {
        assert_eq!(kendall_tau_b(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(kendall_tau_b(&[1.0], &[2.0]), None);
        assert_eq!(kendall_tau_b(&[], &[]), None);
    }

    fn t(v: &[f64]) -> Tensor {
        Tensor::new(v, &candle_core::Device::Cpu).unwrap()
    }

    /// β = 0.5, z = (−1 − −2) − (−3 − −2.5) = 1.5, β·z = 0.75, C = 0.8:
    /// 0.8·softplus(−0.75) + 0.2·softplus(0.75) = 0.8·0.386871 + 0.2·1.136871 = 0.536871.
    #[test]
    fn cream_loss_by_hand() {
        let loss = cream_dpo(
            [&t(&[-1.0]), &t(&[-3.0]), &t(&[-2.0]), &t(&[-2.5])],
            0.5,
            &t(&[0.8]),
        )
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()[0];
        assert!((loss - 0.536_871).abs() < 1e-6, "{loss}");
    }

    /// With every C equal, CREAM is cDPO's label smoothing with ε = 1 − C (TRL's
    /// `sigmoid` loss with `label_smoothing`), and at C = 1 plain DPO.
    #[test]
    fn uniform_cream_is_label_smoothed_dpo() {
        let logps = [
            &t(&[-1.0, -4.0, -2.0]),
            &t(&[-3.0, -1.0, -2.0]),
            &t(&[-2.0, -3.0, -1.5]),
            &t(&[-2.5, -1.2, -2.1]),
        ];
        for c in [1.0, 0.7, 0.5, 0.1] {
            let every = t(&[c; 3]);
            let cream = cream_dpo(logps, 0.3, &every)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let [a, b, rc, rr] = logps;
            let dpo = super::super::dpo_sigmoid(a, b, rc, rr, 0.3, 1.0 - c).unwrap();
            let dpo = dpo.losses.to_vec1::<f64>().unwrap();
            for (x, y) in cream.iter().zip(&dpo) {
                assert!((x - y).abs() < 1e-12, "C {c}: {x} vs {y}");
            }
        }
    }
}
