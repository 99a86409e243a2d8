//! The eval metrics as pure functions over numbers (no model, no tables).
//!
//! Conventions shared by every metric here:
//! - a preference probability `p = P(y1 ≻ y2)` predicts `y1` when `p > ½`,
//!   `y2` when `p < ½`, and scores **½ credit** at exactly ½ (a tie is not a
//!   prediction); likewise a win rate counts an exact gold tie as ½;
//! - an empty set gives `NaN` (there is nothing to average), never 0, so a
//!   missing measurement cannot look like a bad one; the `n` next to every
//!   value says how many items it averages.

use crate::loss::select_pair;

/// A value and the number of items it averages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mean {
    pub value: f64,
    pub n: usize,
}

impl Mean {
    /// The mean of `xs` (`NaN` when empty).
    pub fn of(xs: impl IntoIterator<Item = f64>) -> Mean {
        let (sum, n) = xs
            .into_iter()
            .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
        let value = if n == 0 { f64::NAN } else { sum / n as f64 };
        Mean { value, n }
    }
}

/// 1 when `a` beats `b`, ½ on an exact tie, 0 when it loses.
pub fn win(a: f64, b: f64) -> f64 {
    match a.partial_cmp(&b) {
        Some(std::cmp::Ordering::Greater) => 1.0,
        Some(std::cmp::Ordering::Less) => 0.0,
        _ => 0.5,
    }
}

/// Credit of the prediction `p = P(y1 ≻ y2)` when the truth is `y1_better`.
pub fn credit(p: f64, y1_better: bool) -> f64 {
    if p == 0.5 {
        0.5
    } else if (p > 0.5) == y1_better {
        1.0
    } else {
        0.0
    }
}

/// Win rate of `ours` over `theirs`, item by item (same length).
pub fn win_rate(ours: &[f64], theirs: &[f64]) -> Mean {
    debug_assert_eq!(ours.len(), theirs.len());
    Mean::of(ours.iter().zip(theirs).map(|(a, b)| win(*a, *b)))
}

/// Accuracy of the predictions `p` against the truths.
pub fn accuracy(p: &[f64], y1_better: &[bool]) -> Mean {
    Mean::of(p.iter().zip(y1_better).map(|(p, t)| credit(*p, *t)))
}

/// Fraction of pairs whose pairwise verdict names the same *position* in
/// both orders: `P(A | y1, y2)` and `P(A | y2, y1)` on the same side of ½,
/// so swapping the responses flips the preferred response.
pub fn position_flip_rate(p_a_ab: &[f64], p_a_ba: &[f64]) -> Mean {
    Mean::of(
        p_a_ab
            .iter()
            .zip(p_a_ba)
            .map(|(ab, ba)| f64::from(u8::from((ab - 0.5) * (ba - 0.5) > 0.0))),
    )
}

/// The swap-averaged pairwise GRM: `q = ½·[P(A|y1,y2) + 1 − P(A|y2,y1)]`.
pub fn swap_average(p_a_ab: f64, p_a_ba: f64) -> f64 {
    0.5 * (p_a_ab + 1.0 - p_a_ba)
}

/// The Figure 3 analogue: how the two reward models do where they agree and
/// where they do not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Fraction of pairs the selection rule keeps (consistent).
    pub rate: Mean,
    /// Accuracy of the agreed label on consistent pairs.
    pub consistent_acc: Mean,
    /// Accuracy of the IRM on inconsistent pairs.
    pub inconsistent_irm_acc: Mean,
    /// Accuracy of the GRM on inconsistent pairs.
    pub inconsistent_grm_acc: Mean,
}

/// Split pairs by the training selection rule ([`select_pair`] with `delta`)
/// and score each side against the truth.
pub fn agreement(p: &[f64], q: &[f64], y1_better: &[bool], delta: f64) -> Agreement {
    let mut kept = Vec::new();
    let (mut consistent, mut irm, mut grm) = (Vec::new(), Vec::new(), Vec::new());
    for ((&p, &q), &t) in p.iter().zip(q).zip(y1_better) {
        let selected = select_pair(p, q, delta).is_some();
        kept.push(f64::from(u8::from(selected)));
        if selected {
            consistent.push(credit(p, t));
        } else {
            irm.push(credit(p, t));
            grm.push(credit(q, t));
        }
    }
    Agreement {
        rate: Mean::of(kept),
        consistent_acc: Mean::of(consistent),
        inconsistent_irm_acc: Mean::of(irm),
        inconsistent_grm_acc: Mean::of(grm),
    }
}

/// Expected score level (1-based) of a distribution over score tokens, worst first.
pub fn expected_level(probs: &[f64]) -> f64 {
    probs
        .iter()
        .enumerate()
        .map(|(i, p)| (i + 1) as f64 * p)
        .sum()
}

/// Ridge on the length coefficient φ of [`length_controlled_win_rate`] (keeps φ finite when
/// length separates wins perfectly; AlpacaEval 2.0 also fits a regularised regression).
const LC_RIDGE: f64 = 1e-2;
/// Newton steps of that fit (two parameters: it converges in a handful).
const LC_STEPS: usize = 50;

/// AlpacaEval 2.0's length-controlled win rate (Dubois et al. 2024): fit
/// `P(win_i) = σ(θ + φ·tanh(Δlen_i / sd(Δlen)))` to the wins (1, ½ for a tie, 0) by maximum
/// likelihood (fractional targets; ridge [`LC_RIDGE`] on φ), and report the prediction at
/// `Δlen = 0`, `σ(θ)`: the win rate the model would have if its responses were as long as the
/// baseline's. Without length variation (sd 0) it is the raw win rate.
pub fn length_controlled_win_rate(wins: &[f64], length_gaps: &[f64]) -> Mean {
    debug_assert_eq!(wins.len(), length_gaps.len());
    let raw = Mean::of(wins.iter().copied());
    let sd = sample_sd(length_gaps);
    if wins.is_empty() || sd.is_nan() || sd <= 0.0 {
        return raw;
    }
    let x: Vec<f64> = length_gaps.iter().map(|d| (d / sd).tanh()).collect();
    let (mut theta, mut phi) = (0.0f64, 0.0f64);
    for _ in 0..LC_STEPS {
        let (mut g, mut h) = ([0.0, -LC_RIDGE * phi], [[0.0, 0.0], [0.0, -LC_RIDGE]]);
        for (&y, &xi) in wins.iter().zip(&x) {
            let p = crate::loss::bernoulli::sigmoid(theta + phi * xi);
            let w = p * (1.0 - p);
            g[0] += y - p;
            g[1] += (y - p) * xi;
            h[0][0] -= w;
            h[0][1] -= w * xi;
            h[1][1] -= w * xi * xi;
        }
        h[1][0] = h[0][1];
        let det = h[0][0] * h[1][1] - h[0][1] * h[1][0];
        if det.abs() < 1e-12 {
            break;
        }
        theta -= (h[1][1] * g[0] - h[0][1] * g[1]) / det;
        phi -= (h[0][0] * g[1] - h[1][0] * g[0]) / det;
    }
    Mean {
        value: crate::loss::bernoulli::sigmoid(theta),
        n: raw.n,
    }
}

/// Sample standard deviation (0 for fewer than two values).
fn sample_sd(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_controlled_win_rate_removes_what_length_explains() {
        // No length variation: the raw win rate (0.75).
        let m = length_controlled_win_rate(&[1.0, 1.0, 0.5, 0.5], &[2.0; 4]);
        assert_eq!((m.value, m.n), (0.75, 4));
        // Wins only where ours is longer, symmetric gaps: raw 0.5, and by symmetry θ = 0,
        // so LC = 0.5 however large φ grows.
        let m = length_controlled_win_rate(&[1.0, 1.0, 0.0, 0.0], &[3.0, 1.0, -3.0, -1.0]);
        assert!((m.value - 0.5).abs() < 1e-9, "{}", m.value);
        // 3 of 4 equal-length pairs won, and the ±4 pairs won exactly when longer: raw 0.625,
        // LC near the equal-length rate 0.75 (the ridge keeps φ finite, so the ±4 group
        // pulls θ a little toward 0). 0.738170 is the same fit done independently in Python
        // (Newton's method on the penalised likelihood, θ = 1.03648, φ = 5.31979).
        let wins = [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        let gaps = [0.0, 0.0, 0.0, 0.0, 4.0, 4.0, -4.0, -4.0];
        let lc = length_controlled_win_rate(&wins, &gaps).value;
        assert!((lc - 0.738_170).abs() < 1e-5, "{lc}");
    }

    #[test]
    fn ties_count_half() {
        assert_eq!(win(0.5, 0.5), 0.5);
        assert_eq!(credit(0.5, true), 0.5);
        assert_eq!(win_rate(&[1.0, 0.2, 0.3], &[0.5, 0.2, 0.9]).value, 0.5);
        assert!(Mean::of([]).value.is_nan());
    }

    #[test]
    fn flip_rate_counts_same_position_verdicts() {
        // Pair 0: A in both orders (position bias); pair 1: consistent verdicts.
        let m = position_flip_rate(&[0.9, 0.8], &[0.7, 0.1]);
        assert_eq!((m.value, m.n), (0.5, 2));
        assert!((swap_average(0.8, 0.1) - 0.85).abs() < 1e-12);
    }

    #[test]
    fn agreement_splits_by_the_selection_rule() {
        let p = [0.9, 0.2, 0.7, 0.5];
        let q = [0.8, 0.3, 0.4, 0.9];
        let truth = [true, true, false, true];
        let a = agreement(&p, &q, &truth, 0.0);
        assert_eq!(a.rate.value, 0.5);
        assert_eq!(a.consistent_acc.value, 0.5); // pair 0 right, pair 1 wrong
        assert_eq!(a.inconsistent_irm_acc.value, 0.25); // 0 + ½ (tie)
        assert_eq!(a.inconsistent_grm_acc.value, 1.0);
        assert_eq!(expected_level(&[0.5, 0.0, 0.5]), 2.0);
    }
}
