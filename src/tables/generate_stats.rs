//! `generate_stats` (generate@k): one row of counts and rates.

crate::table! {
    /// The iteration's generation in numbers.
    pub struct GenerateStatsRow in "generate_stats" {
        prompts: i64,
        responses: i64,
        pairs: i64,
        /// Pairs of identical responses, dropped.
        degenerate_pairs: i64,
        /// Responses that ended with EOS.
        finished_rate: f64,
        /// Mean tokens per response.
        mean_length: f64,
    }
}
