//! `sft_examples` (`sft-data`): a user's SFT data as prompt → completion examples, read by
//! `sft` (its `data` input) in place of the world's IFT/EFT tables.
//!
//! A conversational example's `prompt` is its conversation up to the completion, as the JSON
//! list of `{role, content}` messages that the model's chat template renders (with the
//! generation prompt); `completion` is the assistant's reply. A standard example's `prompt`
//! and `completion` are plain text, concatenated without a template (EOS after the
//! completion), as TRL does. The loss is on the completion only.

crate::table! {
    /// One SFT example.
    pub struct SftExampleRow in "sft_examples" {
        /// Example number, in file order.
        id: i64,
        /// The record it comes from (0-based, file order).
        record: i64,
        /// Which assistant turn of a `messages` record (0 otherwise).
        turn: i32,
        /// `prompt` is a JSON list of messages (true) or plain text (false).
        conversational: bool,
        prompt: String,
        completion: String,
    }
}
