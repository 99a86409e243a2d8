//! `judge_examples`: pointwise judge examples from a model's own samples on the world's
//! `judge_prompts` pool, each labelled with its gold score level (written by `judge-data`,
//! read by `sft` through its `judge` input).

crate::table! {
    /// One sampled response and the score level a judge should give it.
    pub struct JudgeExampleRow in "judge_examples" {
        /// `prompt_id · samples + sample`.
        id: i64,
        prompt_id: i64,
        sample: i32,
        task: String,
        prompt: String,
        /// The decoded response (special tokens skipped), as the judge is shown it.
        response: String,
        /// Generated tokens, the stop token included when produced.
        length: i32,
        /// Ended with a stop token (false: ran out of `max_new_tokens`).
        finished: bool,
        /// The gold score (2·LCS / total length) behind the label.
        gold: f64,
        /// The score token the judge is trained to answer.
        label: String,
        /// The label was corrupted on purpose (the world's `eft_label_noise`).
        noisy: bool,
    }
}
