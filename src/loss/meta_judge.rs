//! Meta-Rewarding's judge pairs (Wu et al. 2024): which of a response's judgments the
//! meta-judge prefers.
//!
//! The judge's sampled judgments of one response are compared by the meta-judge in a round
//! robin, every two distinct judgments in both orders. Judgment `v`'s strength is its mean
//! swap-averaged win probability against the others,
//!
//! ```text
//! w(v) = mean_{u ≠ v} ½·[P(A | A = v, B = u) + 1 − P(A | A = u, B = v)]
//! ```
//!
//! (with a full round robin the ranking of a Bradley–Terry/Elo fit, as the paper uses, in
//! the common case of a few judgments). The judge pair is the strongest judgment ≻ the
//! weakest; none when every strength is equal or fewer than two distinct judgments exist.
//! Ties go to the first in `values` order, so the rule is deterministic.

use std::collections::BTreeMap;

/// `P(A)` of the meta-judge for each ordered pair `(a, b)` of distinct judgments shown.
pub type Verdicts = BTreeMap<(u32, u32), f64>;

/// Each judgment's strength `w(v)`, in `values` order (see the module docs); `None` when a
/// needed verdict is missing.
pub fn strengths(values: &[u32], verdicts: &Verdicts) -> Option<Vec<f64>> {
    values
        .iter()
        .map(|&v| {
            let wins: Option<Vec<f64>> = values
                .iter()
                .filter(|&&u| u != v)
                .map(|&u| Some(0.5 * (verdicts.get(&(v, u))? + 1.0 - verdicts.get(&(u, v))?)))
                .collect();
            let wins = wins?;
            Some(wins.iter().sum::<f64>() / wins.len().max(1) as f64)
        })
        .collect()
}

/// The judge pair `(chosen, rejected)` with their strengths, or `None` (see the module docs).
pub fn judge_pair(values: &[u32], verdicts: &Verdicts) -> Option<((u32, f64), (u32, f64))> {
    if values.len() < 2 {
        return None;
    }
    let w = strengths(values, verdicts)?;
    let best = (0..w.len()).fold(0, |b, i| if w[i] > w[b] { i } else { b });
    let worst = (0..w.len()).fold(0, |b, i| if w[i] < w[b] { i } else { b });
    (w[best] > w[worst]).then(|| ((values[best], w[best]), (values[worst], w[worst])))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Judgments 2, 4, 5. P(A) shown: (2,4) 0.2, (4,2) 0.9, (2,5) 0.4, (5,2) 0.7, (4,5) 0.6,
    /// (5,4) 0.5. w(2) = mean(½(0.2 + 0.1), ½(0.4 + 0.3)) = mean(0.15, 0.35) = 0.25;
    /// w(4) = mean(½(0.9 + 0.8), ½(0.6 + 0.5)) = mean(0.85, 0.55) = 0.70;
    /// w(5) = mean(½(0.7 + 0.6), ½(0.5 + 0.4)) = mean(0.65, 0.45) = 0.55.
    /// The pair: 4 ≻ 2.
    #[test]
    fn the_strongest_judgment_beats_the_weakest_by_hand() {
        let verdicts = Verdicts::from([
            ((2, 4), 0.2),
            ((4, 2), 0.9),
            ((2, 5), 0.4),
            ((5, 2), 0.7),
            ((4, 5), 0.6),
            ((5, 4), 0.5),
        ]);
        let w = strengths(&[2, 4, 5], &verdicts).unwrap();
        for (got, want) in w.iter().zip([0.25, 0.70, 0.55]) {
            assert!((got - want).abs() < 1e-12, "{w:?}");
        }
        let ((c, wc), (r, wr)) = judge_pair(&[2, 4, 5], &verdicts).unwrap();
        assert_eq!((c, r), (4, 2));
        assert!((wc - 0.70).abs() < 1e-12 && (wr - 0.25).abs() < 1e-12);
    }

    #[test]
    fn no_pair_without_two_judgments_or_a_preference() {
        assert_eq!(judge_pair(&[3], &Verdicts::new()), None);
        let even = Verdicts::from([((1, 3), 0.5), ((3, 1), 0.5)]);
        assert_eq!(judge_pair(&[1, 3], &even), None);
        let missing = Verdicts::from([((1, 3), 0.9)]);
        assert_eq!(judge_pair(&[1, 3], &missing), None);
    }
}
