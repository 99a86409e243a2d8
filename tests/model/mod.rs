//! Tests of `scir::model`: the decoder, checkpoints, text, generation, scoring, bad input
//! and (with the committed fixtures) parity with Hugging Face transformers.

mod bad_input;
mod checkpoint;
pub(crate) mod common;
mod decoder;
mod fast;
mod generate;
mod parity;
mod reward;
mod text;
