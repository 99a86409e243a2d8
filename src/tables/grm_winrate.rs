//! `grm_winrate_pairs` and `grm_winrate` (grm-winrate@k): Mt's answers against M0's,
//! judged by M0's own GRM in both orders.

crate::table! {
    /// One held-out prompt's comparison.
    pub struct WinratePairRow in "grm_winrate_pairs" {
        prompt_id: i64,
        /// The two answers are the same text (a tie, not judged).
        identical: bool,
        p_a_12: Option<f64>,
        p_a_21: Option<f64>,
        /// Swap-averaged P(candidate better).
        p_win: f64,
        position_flip: Option<bool>,
        /// `win` | `tie` | `loss`.
        outcome: String,
        length_candidate: i32,
        length_base: i32,
    }
}

crate::table! {
    /// The iteration's win rate in numbers.
    pub struct WinrateRow in "grm_winrate" {
        n: i64,
        wins: i64,
        ties: i64,
        losses: i64,
        /// Ties count ½.
        win_rate: f64,
        mean_p_win: f64,
        judged: i64,
        position_flip_rate: Option<f64>,
        identical: i64,
        mean_length_candidate: f64,
        mean_length_base: f64,
    }
}
