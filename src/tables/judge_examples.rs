//! `judge_examples`: judge examples from a model's own samples on the world's
//! `judge_prompts` pool, labelled by gold — a score level (pointwise) or the better one's
//! verdict letter (pairwise) — (written by `judge-data`, read by `sft` through its `judge`
//! input).

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
