//! `judge_tokens` (score-grm@k): the verdict or score tokens the judge was read at.

use super::grm_scores::GrmMode;

crate::table! {
    /// One verdict (pairwise: A = 1, B = 0) or score level (pointwise).
    pub struct JudgeTokenRow in "judge_tokens" {
        mode: GrmMode,
        token: String,
        token_id: i32,
        value: f64,
    }
}
