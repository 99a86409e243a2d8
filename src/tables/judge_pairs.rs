//! `judge_pairs` (score-grm@k with `meta`; empty otherwise): Meta-Rewarding's preference
//! pairs for the judge role. Per response, the judge's sampled judgments (score tokens)
//! compared by the meta-judge ([`crate::loss::meta_judge`]): the strongest ≻ the weakest,
//! trained with DPO next to the actor pairs (`train: { judge_pairs: true }`).

crate::table! {
    /// One response's judge pair.
    pub struct JudgePairRow in "judge_pairs" {
        response_id: i64,
        prompt_id: i64,
        /// Distinct judgments sampled.
        judgments: i32,
        /// The judgment the meta-judge prefers, and the one it likes least.
        chosen: String,
        rejected: String,
        /// Their round-robin strengths `w`.
        chosen_strength: f64,
        rejected_strength: f64,
        /// The judge prompt (the pointwise prompt of the response) and the two judgments'
        /// token ids (the score token, then EOS).
        judge_ids: Vec<u32>,
        chosen_ids: Vec<u32>,
        rejected_ids: Vec<u32>,
    }
}
