//! `preferences`: preference pairs in TRL's standard form (`prompt`, `chosen`, `rejected`),
//! written by `demo-pairs` and `preference-data` (a user's file), read by `train-rm` and
//! `sft` (their `judge` input) in place of judge examples.

crate::table! {
    /// One preference pair: `chosen` is preferred over `rejected` as a reply to `prompt`.
    pub struct PreferenceRow in "preferences" {
        /// Stable id (the prompt's: one pair per prompt).
        id: i64,
        prompt_id: i64,
        /// The raw prompt text (before any chat template).
        prompt: String,
        chosen: String,
        rejected: String,
        /// The chosen reply is complete (EOS follows it when it is encoded).
        chosen_finished: bool,
        /// The rejected reply is complete (false: it ran out of tokens).
        rejected_finished: bool,
        /// Where the pair comes from (`demo-pairs`: the task's id in its file;
        /// `preference-data`: `file:line` or `file: row n`).
        source: String,
    }
}
