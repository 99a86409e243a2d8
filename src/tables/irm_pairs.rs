//! `irm_pairs` (score-irm@k): the implicit reward's preference per pair,
//! `p_irm = σ(β·[(logπ_Mt(y1) − logπ_ref(y1)) − (logπ_Mt(y2) − logπ_ref(y2))])`.

crate::table! {
    /// One pair's IRM preference.
    pub struct IrmPairRow in "irm_pairs" {
        pair_id: i64,
        prompt_id: i64,
        response_id_1: i64,
        response_id_2: i64,
        /// score-irm's β (for SQL; stages read it from score-irm's params).
        beta: f64,
        /// `β·Δ`.
        irm_logit: f64,
        /// P(y1 preferred).
        p_irm: f64,
    }
}
