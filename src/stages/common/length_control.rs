//! Length controls of the training pairs, applied by `consistency-filter` (params
//! `unfinished` and `rho`; docs/algorithm.md, "Length control"):
//!
//! ```text
//! unfinished  keep  an unfinished response (no EOS within max_new_tokens) is like any other
//!             lose  it never wins against a finished one: such a pair's label is forced to
//!                   the finished response, whatever the rewards say (train keeps it, also
//!                   under SCIR's per-step selection)
//!             drop  pairs with an unfinished response do not go to training
//! rho         Meta-Rewarding's length-controlled pair choice (Wu et al. 2024, as NeMo-Aligner
//!             implements it): among one prompt's responses with judge scores in
//!             [S_min, S_max], chosen = the shortest with a score in [(1−ρ)·S_max + ρ·S_min,
//!             S_max], rejected = the longest in [S_min, (1−ρ)·S_min + ρ·S_max]; one pair per
//!             prompt, none when all scores are equal
//! ```

use serde::{Deserialize, Serialize};

use crate::loss::Preferred;

/// What happens to pairs with an unfinished response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unfinished {
    /// Nothing special.
    #[default]
    Keep,
    /// An unfinished response loses against a finished one.
    Lose,
    /// Pairs with an unfinished response are dropped.
    Drop,
}

/// What [`Unfinished`] does to one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairRule {
    /// The rewards decide.
    AsIs,
    /// This label, whatever the rewards say.
    Force(Preferred),
    /// Not trained on.
    Drop,
}

impl Unfinished {
    /// The rule for a pair whose responses did (`true`) or did not finish.
    pub fn rule(self, finished_1: bool, finished_2: bool) -> PairRule {
        match (self, finished_1, finished_2) {
            (_, true, true) | (Unfinished::Keep, _, _) => PairRule::AsIs,
            (Unfinished::Drop, _, _) => PairRule::Drop,
            (Unfinished::Lose, true, false) => PairRule::Force(Preferred::Y1),
            (Unfinished::Lose, false, true) => PairRule::Force(Preferred::Y2),
            (Unfinished::Lose, false, false) => PairRule::AsIs,
        }
    }
}

/// One response of a prompt as the pair choice sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub response_id: i64,
    /// Tokens.
    pub length: i32,
    pub finished: bool,
    /// The judge's score (pointwise expected score).
    pub score: f64,
}

/// Meta-Rewarding's length-controlled choice among one prompt's responses:
/// `(chosen, rejected)` response ids, or `None` when every score is equal. `unfinished`
/// applies first: `drop` leaves unfinished responses out, `lose` scores them below every
/// finished one (so they are only ever rejected). Ties go to the lower response id.
pub fn choose(rho: f64, unfinished: Unfinished, responses: &[Candidate]) -> Option<(i64, i64)> {
    let finished_min = responses
        .iter()
        .filter(|c| c.finished)
        .map(|c| c.score)
        .fold(f64::INFINITY, f64::min);
    let candidates: Vec<Candidate> = responses
        .iter()
        .filter(|c| c.finished || unfinished != Unfinished::Drop)
        .map(|&c| match (unfinished, c.finished) {
            (Unfinished::Lose, false) if finished_min.is_finite() => Candidate {
                score: c.score.min(finished_min) - 1.0,
                ..c
            },
            _ => c,
        })
        .collect();
    let s_max = candidates
        .iter()
        .map(|c| c.score)
        .fold(f64::NEG_INFINITY, f64::max);
    let s_min = candidates
        .iter()
        .map(|c| c.score)
        .fold(f64::INFINITY, f64::min);
    if candidates.len() < 2 || s_max <= s_min {
        return None;
    }
    let top = (1.0 - rho) * s_max + rho * s_min;
    let bottom = (1.0 - rho) * s_min + rho * s_max;
    let chosen = candidates
        .iter()
        .filter(|c| c.score >= top)
        .min_by_key(|c| (c.length, c.response_id))?;
    let rejected = candidates
        .iter()
        .filter(|c| c.score <= bottom)
        .min_by_key(|c| (-c.length, c.response_id))?;
    (chosen.response_id != rejected.response_id)
        .then_some((chosen.response_id, rejected.response_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(response_id: i64, length: i32, score: f64) -> Candidate {
        Candidate {
            response_id,
            length,
            finished: true,
            score,
        }
    }

    /// Hand-computed: scores 5, 4.6, 3, 1.2, 1 (S_max 5, S_min 1). ρ = 0: chosen = the
    /// shortest with score 5 (id 0), rejected = the longest with score 1 (id 4). ρ = 0.1:
    /// top ≥ 4.6 → {0, 1}, the shorter is id 1; bottom ≤ 1.4 → {3, 4}, the longer is id 3.
    #[test]
    fn rho_picks_the_shortest_near_the_top_and_the_longest_near_the_bottom() {
        let r = [
            c(0, 9, 5.0),
            c(1, 6, 4.6),
            c(2, 3, 3.0),
            c(3, 12, 1.2),
            c(4, 7, 1.0),
        ];
        assert_eq!(choose(0.0, Unfinished::Keep, &r), Some((0, 4)));
        assert_eq!(choose(0.1, Unfinished::Keep, &r), Some((1, 3)));
        // Equal scores: no pair.
        assert_eq!(
            choose(0.0, Unfinished::Keep, &[c(0, 3, 2.0), c(1, 4, 2.0)]),
            None
        );
    }

    #[test]
    fn unfinished_responses_never_win_under_lose_and_vanish_under_drop() {
        let mut r = [c(0, 16, 5.0), c(1, 8, 4.0), c(2, 5, 2.0)];
        r[0].finished = false;
        // keep: the unfinished top scorer is chosen; lose: it becomes the worst, so it is
        // rejected (the longest at the bottom); drop: only ids 1 and 2 remain.
        assert_eq!(choose(0.0, Unfinished::Keep, &r), Some((0, 2)));
        assert_eq!(choose(0.0, Unfinished::Lose, &r), Some((1, 0)));
        assert_eq!(choose(0.0, Unfinished::Drop, &r), Some((1, 2)));
        assert_eq!(
            Unfinished::Lose.rule(false, true),
            PairRule::Force(Preferred::Y2)
        );
        assert_eq!(
            Unfinished::Lose.rule(true, false),
            PairRule::Force(Preferred::Y1)
        );
        assert_eq!(Unfinished::Lose.rule(false, false), PairRule::AsIs);
        assert_eq!(Unfinished::Drop.rule(true, false), PairRule::Drop);
        assert_eq!(Unfinished::Keep.rule(false, true), PairRule::AsIs);
    }
}
