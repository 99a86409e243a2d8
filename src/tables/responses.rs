//! `responses` (generate@k): every sampled response. Token ids are stored once here (as
//! fed to the model and as generated) and every later stage reuses them; nothing is
//! re-tokenised.

use std::collections::BTreeMap;

use crate::engine::stage::InputArtifact;

crate::table! {
    /// One sampled response.
    pub struct ResponseRow in "responses" {
        /// `prompt_id · n + sample_idx`.
        response_id: i64,
        prompt_id: i64,
        sample_idx: i32,
        /// The raw prompt text.
        prompt: String,
        /// The prompt as fed to the model (chat template applied).
        prompt_ids: Vec<u32>,
        text: String,
        /// The generated ids, EOS included when produced.
        token_ids: Vec<u32>,
        /// Tokens generated.
        length: i32,
        /// Ended with EOS.
        finished: bool,
    }
}

/// The responses of `input` by `response_id`.
pub fn by_id(input: &InputArtifact) -> anyhow::Result<BTreeMap<i64, ResponseRow>> {
    Ok(super::keyed(input.rows()?, |r: &ResponseRow| r.response_id))
}

/// The response `id` of `map`, or an error naming the pair that names it.
pub fn get(map: &BTreeMap<i64, ResponseRow>, id: i64, pair: i64) -> anyhow::Result<&ResponseRow> {
    map.get(&id)
        .ok_or_else(|| anyhow::anyhow!("pair {pair} names response {id}, which does not exist"))
}
