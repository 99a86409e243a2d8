//! `grm_scores` (score-grm@k): the model as a judge of every pair, and [`GrmMode`].
//!
//! Pairwise rows fill `p_a_12`, `p_a_21` (with swap) and `position_flip`; pointwise rows
//! fill `score_1`, `score_2` and `tau`. The judge prompts' ids are stored (and reused by
//! train@k): pairwise, orders (y1, y2) and (y2, y1); pointwise, y1 and y2 alone.

use serde::{Deserialize, Serialize};

/// How the model judges: both responses in one prompt, or each alone with a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrmMode {
    Pairwise,
    Pointwise,
}

impl GrmMode {
    /// The name as written in a pipeline file and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            GrmMode::Pairwise => "pairwise",
            GrmMode::Pointwise => "pointwise",
        }
    }
    /// Inverse of [`GrmMode::as_str`].
    pub fn parse(s: &str) -> Option<GrmMode> {
        [GrmMode::Pairwise, GrmMode::Pointwise]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

crate::text_column!(GrmMode);

crate::table! {
    /// One pair as judged.
    pub struct GrmScoreRow in "grm_scores" {
        pair_id: i64,
        mode: GrmMode,
        /// P(A | A = y1, B = y2).
        p_a_12: Option<f64>,
        /// P(A | A = y2, B = y1).
        p_a_21: Option<f64>,
        /// Expected score of y1.
        score_1: Option<f64>,
        score_2: Option<f64>,
        /// τ of `σ((s1 − s2)/τ)` (for SQL; stages read it from score-grm's params).
        tau: Option<f64>,
        /// P(y1 preferred).
        p_grm: f64,
        /// The judge picked the same letter in both orders.
        position_flip: Option<bool>,
        /// Judge prompt of order (y1, y2), or of y1 alone.
        judge_ids_1: Vec<u32>,
        /// Judge prompt of order (y2, y1) (absent without swap), or of y2 alone.
        judge_ids_2: Option<Vec<u32>>,
    }
}

impl GrmScoreRow {
    /// A row with what every mode fills; the mode's own fields (`p_a_*`, `position_flip`,
    /// `score_*`, `tau`) are `None` until set.
    pub fn judged(
        pair_id: i64,
        mode: GrmMode,
        p_grm: f64,
        judge_ids_1: Vec<u32>,
        judge_ids_2: Option<Vec<u32>>,
    ) -> Self {
        GrmScoreRow {
            pair_id,
            mode,
            p_a_12: None,
            p_a_21: None,
            score_1: None,
            score_2: None,
            tau: None,
            p_grm,
            position_flip: None,
            judge_ids_1,
            judge_ids_2,
        }
    }
}
