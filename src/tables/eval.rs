//! The eval stages' tables: `eval` and `eval_labels` (long format: one row per metric; the
//! metric names are listed in [`crate::report`]), `eval_responses` and `eval_pairs` (the
//! detail behind them). Written by eval@k and eval-labels@k; read by `scir report`.

crate::table! {
    /// One metric of eval@k. `value` is NaN when there was nothing to average.
    pub struct EvalMetricRow in "eval" {
        metric: String,
        value: f64,
        /// The number of items averaged.
        n: i64,
    }
}

crate::table! {
    /// One metric of eval-labels@k (the columns of `eval`).
    pub struct EvalLabelRow in "eval_labels" {
        metric: String,
        value: f64,
        n: i64,
    }
}

crate::table! {
    /// One of eval-labels@k's own pairs (generate@k's, as the filter saw them) with its
    /// responses' gold scores: what the report's pair browser shows beside the label.
    pub struct EvalLabelPairRow in "eval_label_pairs" {
        pair_id: i64,
        gold_1: f64,
        gold_2: f64,
        /// `y1` | `y2` | `tie`: the better response by gold.
        gold_label: String,
    }
}

crate::table! {
    /// One response eval generated on a held-out prompt.
    pub struct EvalResponseRow in "eval_responses" {
        prompt_id: i64,
        /// `greedy` | `sampled`.
        decoding: String,
        sample: i32,
        response: String,
        length: i32,
        finished: bool,
        /// The gold score (2·LCS / total length).
        gold: f64,
        /// Gold score 1.
        exact: bool,
    }
}

crate::table! {
    /// One held-out gold pair as the model's IRM and GRM judge it.
    pub struct EvalPairRow in "eval_pairs" {
        pair_id: i64,
        a_better: bool,
        p_irm: f64,
        /// P(A) with (a, b) shown.
        p_a_ab: f64,
        /// P(A) with (b, a) shown.
        p_a_ba: f64,
        q_pairwise: f64,
        score_a: f64,
        score_b: f64,
        q_pointwise: f64,
    }
}
