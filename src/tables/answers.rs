//! `answers` (answers@k): one answer per prompt, for held-out evaluation.

use std::collections::BTreeMap;

use crate::engine::stage::InputArtifact;

crate::table! {
    /// One prompt's answer.
    pub struct AnswerRow in "answers" {
        prompt_id: i64,
        prompt: String,
        /// The prompt as fed to the model (chat template applied).
        prompt_ids: Vec<u32>,
        text: String,
        token_ids: Vec<u32>,
        length: i32,
        finished: bool,
    }
}

/// The answers of `input` by prompt id.
pub fn by_prompt(input: &InputArtifact) -> anyhow::Result<BTreeMap<i64, AnswerRow>> {
    Ok(super::keyed(input.rows()?, |r: &AnswerRow| r.prompt_id))
}
