//! `filter_summary` (consistency-filter@k): one row per iteration.

use super::filter_pairs::FilterMode;

crate::table! {
    /// The iteration's filter in numbers.
    pub struct FilterSummaryRow in "filter_summary" {
        mode: FilterMode,
        pairs: i64,
        consistent: i64,
        /// Agreement rate with δ = 0.
        agreement: f64,
        /// Consistency rate with δ.
        consistency_rate: f64,
        selected: i64,
        /// The previous iteration's selected pairs (0 at k = 1).
        trained_pairs: i64,
        /// Their IRM/GRM agreement under Mt, δ = 0 (NULL at k = 1 or without pairs).
        trained_consistency_rate: Option<f64>,
    }
}
