//! Any bytes as a `.gguf` file: `scir model import` (`model::gguf::import`: header,
//! metadata, tokenizer metadata, tensor infos and data, the Hugging Face directory it writes)
//! must return Ok or an error, never panic, abort on a huge allocation or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scir_fuzz::{model, scratch};

fuzz_target!(|data: &[u8]| {
    scratch::let_scir_catch_panics();
    let dir = scratch::dir("gguf");
    scratch::write(&dir, "m.gguf", data);
    let _ = model::gguf::import(&dir.join("m.gguf"), &dir.join("out"));
});
