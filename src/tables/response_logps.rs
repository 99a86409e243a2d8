//! `response_logps` (score-irm@k): `log π(y|x)` of every response under Mt and under the
//! IRM reference. `logp_policy` is also the DPO reference of train@k, which never
//! recomputes it.

crate::table! {
    /// One response's log-probs (summed over its stored token ids).
    pub struct ResponseLogpRow in "response_logps" {
        response_id: i64,
        /// Under Mt (the DPO reference).
        logp_policy: f64,
        /// Under the IRM reference.
        logp_irm_ref: f64,
        /// Tokens scored.
        length: i32,
    }
}
