//! A reward model's scores: a decoder with a `score` head ([`Head::Score`], transformers'
//! `*ForSequenceClassification` with one label) read at each sequence's last token.
//!
//! - [`rewards`]: sequences of ids (prompt then response, as the policy sees them) →
//!   `r(x, y)`, shape `(b,)` f32, differentiable. Right padding; the reward is the head's
//!   output at the last real token of each row. transformers reads the rightmost position
//!   whose input id is not the pad id, the same position whenever a sequence holds no pad
//!   token (scir's sequences never do: the pad id is not generated).
//! - [`rewards_vec`]: the same in chunks, as numbers.
//!
//! Loading and saving are [`super::checkpoint`]'s: `config.json` names the head through
//! `architectures` and the weight is `score.weight` `(1, hidden)`.

use candle_core::Tensor;

use super::config::Head;
use super::decoder::Decoder;
use super::linear::Adapters;
use super::score::{in_chunks, token_logits_at_last};

/// The one output of a score head.
pub const SCORE_OUTPUT: u32 = 0;

/// A user error unless `dec` has a score head.
pub fn check_reward_model(dec: &Decoder) -> anyhow::Result<()> {
    if dec.config().head != Head::Score {
        anyhow::bail!(crate::user_err!(
            "this checkpoint is a language model, not a reward model: its config.json names \
             no *ForSequenceClassification architecture"
        ));
    }
    Ok(())
}

/// `r(x, y)` of each sequence, `(b,)` f32 (see the module docs).
pub fn rewards(
    dec: &Decoder,
    seqs: &[Vec<u32>],
    pad_id: u32,
    adapters: Adapters,
) -> anyhow::Result<Tensor> {
    check_reward_model(dec)?;
    if let Some(i) = seqs.iter().position(Vec::is_empty) {
        anyhow::bail!(crate::user_err!("sequence {i} has no tokens to score"));
    }
    let out = token_logits_at_last(dec, seqs, &[SCORE_OUTPUT], pad_id, adapters)?;
    Ok(out.squeeze(1)?)
}

/// [`rewards`] in chunks of `chunk` sequences, as numbers.
pub fn rewards_vec(
    dec: &Decoder,
    seqs: &[Vec<u32>],
    pad_id: u32,
    adapters: Adapters,
    chunk: usize,
) -> anyhow::Result<Vec<f32>> {
    in_chunks(seqs, chunk, |part| {
        Ok(rewards(dec, part, pad_id, adapters)?
            .detach()
            .to_vec1::<f32>()?)
    })
}
