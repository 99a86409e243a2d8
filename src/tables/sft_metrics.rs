//! `sft_metrics` (sft): one row per optimizer step.

crate::table! {
    /// One optimizer step.
    pub struct SftMetricRow in "sft_metrics" {
        step: i32,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        /// Response tokens in the step's batch.
        tokens: i64,
    }
}
