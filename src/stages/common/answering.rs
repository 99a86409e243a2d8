//! Answering conversations with a model: one answer per conversation, greedy or sampled
//! with one seed per row ([`row_seed`]), so an answer depends only on its conversation,
//! its seed and the model — not on the batch. Shared by `generate`, `answers` and
//! `scir export --model-answers`.

use crate::model::generate::{GenerateParams, Sampler, generate};
use crate::model::{Adapters, Message, Model};

/// The sampling seed of one row.
pub fn row_seed(task_seed: u64, prompt_id: i64, sample: usize) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"scir.generate.row.v1\0");
    h.update(&task_seed.to_le_bytes());
    h.update(&prompt_id.to_le_bytes());
    h.update(&(sample as u64).to_le_bytes());
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]);
    u64::from_le_bytes(bytes)
}

/// How [`answer_chats`] decodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerSettings {
    pub max_new_tokens: usize,
    pub sampler: Sampler,
    pub batch_size: usize,
    /// Row seeds derive from it (sampling only).
    pub seed: u64,
}

impl AnswerSettings {
    /// Greedy decoding (the deterministic default of evaluation and export).
    pub fn greedy(max_new_tokens: usize, batch_size: usize) -> Self {
        AnswerSettings {
            max_new_tokens,
            sampler: Sampler::Greedy,
            batch_size,
            seed: 0,
        }
    }
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The conversation as fed to the model (chat template applied).
    pub prompt_ids: Vec<u32>,
    /// Generated ids, EOS included when produced.
    pub token_ids: Vec<u32>,
    /// The decoded answer (special tokens skipped).
    pub text: String,
    /// Ended with a stop token (false: ran out of tokens).
    pub finished: bool,
}

/// Answer each conversation (its last message is the user's) with `model`; `ids[i]` keys
/// row i's seed. `progress` is told how many rows each batch finished.
pub fn answer_chats(
    model: &Model,
    chats: &[Vec<Message>],
    ids: &[i64],
    s: &AnswerSettings,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<Vec<Answer>> {
    anyhow::ensure!(chats.len() == ids.len(), "one id per conversation");
    let prompts: Vec<Vec<u32>> = chats
        .iter()
        .map(|c| model.text.encode_chat_prompt(c))
        .collect::<anyhow::Result<_>>()?;
    let gp = GenerateParams::for_text(&model.text, s.max_new_tokens, s.sampler);
    // Similar lengths share a batch (less padding); the order is restored below.
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| (prompts[i].len(), i));
    let mut outs = vec![None; prompts.len()];
    for chunk in order.chunks(s.batch_size.max(1)) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
        let seeds: Vec<u64> = chunk.iter().map(|&i| row_seed(s.seed, ids[i], 0)).collect();
        let gens = generate(&model.decoder, &batch, &seeds, &gp, Adapters::On)?;
        for (&i, g) in chunk.iter().zip(gens) {
            outs[i] = Some(g);
        }
        progress(chunk.len() as u64);
    }
    prompts
        .into_iter()
        .zip(outs)
        .map(|(prompt_ids, g)| {
            let g = g.ok_or_else(|| crate::internal_err!("a row was not generated"))?;
            Ok(Answer {
                prompt_ids,
                text: model.text.decode(&g.token_ids, true)?,
                finished: g.stopped,
                token_ids: g.token_ids,
            })
        })
        .collect()
}
