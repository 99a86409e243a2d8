//! The Llama-family decoder, checkpoints, text, generation, scoring and training.

pub mod lora;
