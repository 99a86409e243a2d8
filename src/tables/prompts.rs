//! `prompts`: the prompt slices of a pipeline, `iteration` = the iteration that uses them
//! (1..=N). Three stages write a table of that name: `prompts` ([`PromptRow`]),
//! `instructions` ([`InstructionRow`], with the task id of the source file) and `world`
//! (with the world's task kind; [`crate::world`]). Readers read [`PromptRow`]: the columns
//! all three share.

crate::table! {
    /// One prompt.
    pub struct PromptRow in "prompts" {
        /// Stable id (joins are by id).
        id: i64,
        /// The raw prompt text (before any chat template).
        prompt: String,
    }
}

crate::table! {
    /// One Self-Instruct task as a prompt (instruction, then its first input).
    pub struct InstructionRow in "prompts" {
        /// The task's line number in its file.
        id: i64,
        prompt: String,
        /// The task's id in the file.
        source_id: String,
    }
}
