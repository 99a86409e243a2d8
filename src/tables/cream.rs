//! `cream_rewards` and `cream_prompts` (consistency-filter@k, `mode: cream`; empty in the
//! other modes): the two rankings CREAM compares and what it made of them
//! ([`crate::loss::cream`]).
//!
//! `reward` is Mt's implicit reward of a response (score-irm's margin: `logπ_Mt − logπ_ref`,
//! per token under `norm: mean`); `previous_reward` the previous model's, against its own
//! reference, or its length-normalised log-likelihood where the model chain has no model
//! before it. Per prompt: Kendall's τ_b of the two, the consistency `C` the prompt's pair
//! trains with (the average over prompts, or the prompt's own), and the pair: the best and
//! the worst response by Mt's reward.

crate::table! {
    /// One response under the two rankings.
    pub struct CreamRewardRow in "cream_rewards" {
        response_id: i64,
        prompt_id: i64,
        reward: f64,
        previous_reward: f64,
    }
}

crate::table! {
    /// One prompt's rankings compared.
    pub struct CreamPromptRow in "cream_prompts" {
        prompt_id: i64,
        responses: i32,
        /// Kendall's τ_b of the rankings (NULL: one ranking is all ties).
        tau: Option<f64>,
        /// C of the prompt's pair in train's loss.
        consistency: f64,
        /// The pair: Mt's best and worst response (NULL: every reward is equal).
        chosen: Option<i64>,
        rejected: Option<i64>,
    }
}
