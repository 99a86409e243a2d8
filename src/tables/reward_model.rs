//! `rm_metrics` and `rm_summary` (train-rm): the reward model's training steps, and its
//! accuracy on the pairs it trained on and on the pairs it held out for validation.

crate::table! {
    /// One optimizer step.
    pub struct RmMetricRow in "rm_metrics" {
        step: i32,
        epoch: i32,
        /// Pairs in the step's batch.
        pairs: i32,
        loss: f64,
        /// The fraction of the batch with `r_c > r_l` (TRL's `accuracy`).
        accuracy: f64,
        /// Mean `r_c − r_l` of the batch.
        margin: f64,
        lr: f64,
        grad_norm: f64,
    }
}

crate::table! {
    /// The trained reward model on one split.
    pub struct RmSummaryRow in "rm_summary" {
        /// `train` | `validation`.
        split: String,
        pairs: i64,
        /// NULL without pairs.
        accuracy: Option<f64>,
    }
}
