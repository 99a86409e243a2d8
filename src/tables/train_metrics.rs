//! `train_metrics` (train@k): one row per optimizer step, named as TRL names them. A
//! metric is NULL where it is undefined (no pair selected; the consistency metrics of srlm).

use serde::{Deserialize, Serialize};

crate::table! {
    /// One optimizer step.
    #[derive(Serialize, Deserialize)]
    pub struct TrainMetricRow in "train_metrics" {
        step: i32,
        epoch: i32,
        /// Pairs in the step's batch.
        pairs: i32,
        loss: Option<f64>,
        rewards_chosen: Option<f64> as "rewards/chosen",
        rewards_rejected: Option<f64> as "rewards/rejected",
        rewards_accuracies: Option<f64> as "rewards/accuracies",
        rewards_margins: Option<f64> as "rewards/margins",
        logps_chosen: Option<f64> as "logps/chosen",
        logps_rejected: Option<f64> as "logps/rejected",
        loss_dpo: Option<f64> as "loss/dpo",
        loss_consistency: Option<f64> as "loss/consistency",
        selected_frac: Option<f64> as "consistency/selected_frac",
        agreement: Option<f64> as "consistency/agreement",
        lr: f64,
        grad_norm: f64,
    }
}
