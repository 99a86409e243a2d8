//! Tests of `scir model import --gguf` (`scir::model::gguf`): crafted GGUF files round-trip
//! exactly (names, Q/K permutation, config, tokenizer), quantised tensors dequantise, bad
//! files are user errors that write nothing, and (when examples/smollm2/setup.sh has run)
//! the imported SmolLM2 matches transformers' reference numbers.

mod bad_files;
mod craft;
mod fuzz_seeds;
mod parity;
mod roundtrip;
