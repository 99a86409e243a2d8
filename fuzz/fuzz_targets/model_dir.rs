//! Any bytes as a Hugging Face model directory's `config.json` and `model.safetensors` (the
//! input's two parts, split at `scratch::SEPARATOR`), beside the fixture tokenizer:
//! `model::Model::load` must return Ok or an error, never panic, abort on a huge allocation
//! or hang.
#![no_main]

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use scir_fuzz::model::{Model, Weights};
use scir_fuzz::scratch;

const TOKENIZER: &[u8] = include_bytes!("../../tests/fixtures/tokenizer/tokenizer.json");
const TOKENIZER_CONFIG: &[u8] =
    include_bytes!("../../tests/fixtures/tokenizer/tokenizer_config.json");

fuzz_target!(|data: &[u8]| {
    scratch::let_scir_catch_panics();
    let dir = scratch::dir("model-dir");
    let parts = scratch::parts(data, 2);
    scratch::write(&dir, "config.json", parts[0]);
    scratch::write(&dir, "model.safetensors", parts[1]);
    scratch::write(&dir, "tokenizer.json", TOKENIZER);
    scratch::write(&dir, "tokenizer_config.json", TOKENIZER_CONFIG);
    for weights in [Weights::Frozen, Weights::Trainable] {
        let _ = Model::load(&dir, weights, &Device::Cpu);
    }
});
