//! The built-in world's tables (written by the `world` and `heldout` stages through
//! [`crate::world`], whose schemas these are): the prompt pool, `ift` and `eft` (read by
//! sft), the judge-data pool `judge_prompts`, and the held-out `eval_prompts` and `gold_pairs` (read by eval only).
//!
//! Every prompt is distinct across all six tables, so the held-out sets never overlap
//! training data.

crate::table! {
    /// One prompt of the pool (`iteration` 1..=N: the iteration that uses it); generate reads
    /// it as a [`super::prompts::PromptRow`].
    pub struct WorldPromptRow in "prompts" {
        id: i64,
        /// The task kind (`sort`, …).
        task: String,
        prompt: String,
    }
}

crate::table! {
    /// One instruction demonstration.
    pub struct IftRow in "ift" {
        id: i64,
        task: String,
        prompt: String,
        response: String,
        /// The response was corrupted on purpose (world noise).
        noisy: bool,
    }
}

crate::table! {
    /// One judge training example: pointwise (`response_b` NULL) or pairwise.
    pub struct EftRow in "eft" {
        id: i64,
        task: String,
        prompt: String,
        /// `pointwise` | `pairwise`.
        mode: String,
        response_a: String,
        response_b: Option<String>,
        /// The judge's answer: a score level or a verdict.
        label: String,
        /// The label was corrupted on purpose (world noise).
        noisy: bool,
    }
}

crate::table! {
    /// One prompt of the judge-data pool: the `judge-data` stage samples a model on it and
    /// gold-labels the samples as judge examples (never an iteration's prompt or held out).
    pub struct JudgePromptRow in "judge_prompts" {
        id: i64,
        task: String,
        prompt: String,
    }
}

crate::table! {
    /// One held-out prompt (eval only).
    pub struct EvalPromptRow in "eval_prompts" {
        id: i64,
        task: String,
        prompt: String,
    }
}

crate::table! {
    /// One held-out pair with gold scores and the gold verdict (eval only).
    pub struct GoldPairRow in "gold_pairs" {
        id: i64,
        task: String,
        prompt: String,
        response_a: String,
        response_b: String,
        gold_a: f64,
        gold_b: f64,
        /// `A` when `response_a` is better, else `B`.
        label: String,
    }
}
