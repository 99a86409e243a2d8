//! The tiny model's tokenizer: one token per character of a fixed vocabulary
//! (special tokens, a–z, A–Z, digits, space, newline, ASCII punctuation), as
//! a Hugging Face `tokenizers::Tokenizer` so it saves to and loads from a
//! standard `tokenizer.json` like any real model's.
//!
//! Ids: `<pad>`=0, `<bos>`=1, `<eos>`=2, `<unk>`=3, then the characters in
//! the order of [`CHARACTERS`]. Encoding adds `<bos>` in front (template
//! post-processor); decoding concatenates the characters.

use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::format::{BOS, EOS, PAD, UNK};

/// Special tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 4] = [PAD, BOS, EOS, UNK];
/// Every ordinary character of the vocabulary, in id order.
pub const CHARACTERS: &str = concat!(
    "abcdefghijklmnopqrstuvwxyz",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789",
    " \n",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
);
/// Pre-tokenizer pattern: every single character (newline included).
const ONE_CHAR: &str = r"[\s\S]";

/// The character-level tokenizer of the built-in world. It is built from
/// constants only; it panics only if they are inconsistent, a bug that the
/// world's tests catch.
pub fn tokenizer() -> Tokenizer {
    build().expect("the built-in world tokenizer is built from constants")
}

fn build() -> anyhow::Result<Tokenizer> {
    let vocab = SPECIAL_TOKENS
        .iter()
        .map(|s| s.to_string())
        .chain(CHARACTERS.chars().map(String::from))
        .enumerate()
        .map(|(id, token)| (token, id as u32))
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token(UNK.to_string())
        .build()
        .map_err(|e| crate::internal_err!("building the world tokenizer: {e}"))?;
    let mut tok = Tokenizer::new(model);
    let split = Split::new(
        SplitPattern::Regex(ONE_CHAR.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| crate::internal_err!("world tokenizer pattern: {e}"))?;
    tok.with_pre_tokenizer(Some(split));
    tok.with_decoder(Some(Fuse::new()));
    let bos_id = tok.token_to_id(BOS).unwrap_or(1);
    let template = TemplateProcessing::builder()
        .try_single(format!("{BOS} $A"))
        .and_then(|b| b.try_pair(format!("{BOS} $A $B")))
        .map_err(|e| crate::internal_err!("world tokenizer template: {e}"))?
        .special_tokens(vec![(BOS, bos_id)])
        .build()
        .map_err(|e| crate::internal_err!("world tokenizer template: {e}"))?;
    tok.with_post_processor(Some(template));
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|s| AddedToken::from(s.to_string(), true))
        .collect();
    tok.add_special_tokens(specials)
        .map_err(|e| crate::internal_err!("world tokenizer special tokens: {e}"))?;
    Ok(tok)
}
