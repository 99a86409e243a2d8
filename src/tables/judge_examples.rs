//! `judge_examples`: judge examples from a model's own samples on the world's
//! `judge_prompts` pool, labelled by gold — a score level (pointwise) or the better one's
//! verdict letter (pairwise) — and `meta_examples`, meta-judge examples on the same samples
//! (written by `judge-data`, read by `sft` through its `judge` input and by `train-rm`).

use super::grm_scores::GrmMode;

crate::table! {
    /// One sampled response (pointwise) or two (pairwise: `response` shown as A) and the
    /// answer a judge should give.
    pub struct JudgeExampleRow in "judge_examples" {
        /// `prompt_id · samples + sample`.
        id: i64,
        prompt_id: i64,
        sample: i32,
        task: String,
        prompt: String,
        mode: GrmMode,
        /// The decoded response (special tokens skipped), as the judge is shown it.
        response: String,
        /// Pairwise: the response shown as B.
        response_b: Option<String>,
        /// Generated tokens, the stop token included when produced.
        length: i32,
        /// Ended with a stop token (false: ran out of `max_new_tokens`).
        finished: bool,
        /// The gold score (2·LCS / total length) behind the label.
        gold: f64,
        /// Pairwise: `response_b`'s gold score.
        gold_b: Option<f64>,
        /// The score token or verdict letter the judge is trained to answer.
        label: String,
        /// The label was corrupted on purpose (the world's `eft_label_noise`).
        noisy: bool,
    }
}

crate::table! {
    /// One meta-judge example (Meta-Rewarding's judge of judgments): a sampled response,
    /// two judgments of it (score tokens, `judgment_a` shown as A), and the letter of the
    /// one closer to the response's score level (the pointwise example's label).
    pub struct MetaExampleRow in "meta_examples" {
        /// `judge_examples.id` of the response.
        id: i64,
        prompt_id: i64,
        prompt: String,
        response: String,
        judgment_a: String,
        judgment_b: String,
        /// The score level the judgments are compared with.
        level: i32,
        /// `A` | `B`.
        label: String,
    }
}
