//! A padded batch of token sequences: ids `(b, t)` and a real-token mask `(b, t)`.
//!
//! Right padding is for scoring and training (every row starts at position 0, the mask hides
//! the tail); left padding is for generation (every row's last token is at column `t-1`, so
//! the next-token logits of all rows sit in one column). Either way, a padded position is
//! never attended to, and real tokens get the RoPE positions they would get alone, so a
//! batch gives the same numbers as its rows one by one.

use candle_core::{Device, Result, Tensor};

use crate::user_err;

/// A prompt and a response, as token ids (EOS already appended to the response if wanted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub prompt: Vec<u32>,
    pub response: Vec<u32>,
}

/// Token ids with padding, plus which positions are real.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    ids: Vec<Vec<u32>>,
    mask: Vec<Vec<bool>>,
}

/// Which side padding goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Left,
    Right,
}

impl Batch {
    /// The errors [`Batch::padded`] gives: an empty batch or an empty sequence.
    pub fn check(seqs: &[Vec<u32>]) -> anyhow::Result<()> {
        if seqs.is_empty() {
            return Err(user_err!("empty batch: nothing to run the model on").into());
        }
        if let Some(i) = seqs.iter().position(Vec::is_empty) {
            return Err(
                user_err!("sequence {i} has no tokens (empty text and no BOS token)").into(),
            );
        }
        Ok(())
    }

    /// Pad `seqs` to the longest with `pad`; errors on an empty batch or an empty sequence.
    pub fn padded(seqs: &[Vec<u32>], pad: u32, side: Padding) -> anyhow::Result<Self> {
        Self::check(seqs)?;
        let t = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(seqs.len());
        let mut mask = Vec::with_capacity(seqs.len());
        for s in seqs {
            let n_pad = t - s.len();
            let (row, m): (Vec<u32>, Vec<bool>) = match side {
                Padding::Right => (
                    s.iter()
                        .copied()
                        .chain(std::iter::repeat_n(pad, n_pad))
                        .collect(),
                    std::iter::repeat_n(true, s.len())
                        .chain(std::iter::repeat_n(false, n_pad))
                        .collect(),
                ),
                Padding::Left => (
                    std::iter::repeat_n(pad, n_pad)
                        .chain(s.iter().copied())
                        .collect(),
                    std::iter::repeat_n(false, n_pad)
                        .chain(std::iter::repeat_n(true, s.len()))
                        .collect(),
                ),
            };
            ids.push(row);
            mask.push(m);
        }
        Ok(Batch { ids, mask })
    }

    /// One new token per row, all real (a generation step).
    pub fn step(tokens: &[u32]) -> Self {
        Batch {
            ids: tokens.iter().map(|&t| vec![t]).collect(),
            mask: vec![vec![true]; tokens.len()],
        }
    }

    /// Rows.
    pub fn batch_size(&self) -> usize {
        self.ids.len()
    }

    /// Columns (padded length).
    pub fn seq_len(&self) -> usize {
        self.ids.first().map_or(0, Vec::len)
    }

    /// Padded ids, `b` rows of `t`.
    pub fn ids(&self) -> &[Vec<u32>] {
        &self.ids
    }

    /// Real-token flags, `b` rows of `t`.
    pub fn mask(&self) -> &[Vec<bool>] {
        &self.mask
    }

    /// Real tokens per row.
    pub fn lengths(&self) -> Vec<usize> {
        self.mask
            .iter()
            .map(|m| m.iter().filter(|x| **x).count())
            .collect()
    }

    /// The ids as a `(b, t)` u32 tensor.
    pub fn ids_tensor(&self, dev: &Device) -> Result<Tensor> {
        let flat: Vec<u32> = self.ids.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (self.batch_size(), self.seq_len()), dev)
    }
}
