//! Tests of the training plumbing (`scir::model::{optim, schedule, lora, train_state,
//! trainer}`): first on toy problems, then on small decoders.

mod on_model;
mod plumbing;
