//! `pairs` (generate@k): the unlabeled pairs of a prompt's responses (all pairs, or random
//! disjoint pairs; pairs of identical token ids are dropped).

crate::table! {
    /// One unlabeled pair.
    pub struct PairRow in "pairs" {
        /// `prompt_id · P + j` (P pairs per prompt).
        pair_id: i64,
        prompt_id: i64,
        response_id_1: i64,
        response_id_2: i64,
    }
}
