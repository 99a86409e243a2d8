//! The Llama-family decoder, checkpoints, text, generation, scoring and training.

pub mod lora;
pub mod optim;
pub mod schedule;
pub mod train_state;
