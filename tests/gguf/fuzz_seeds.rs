//! The fuzzers' seed inputs for the model-file targets (`fuzz/seeds/{gguf,model_dir,tokenizer}/`),
//! written from a tiny model by `cargo test -- --ignored write_fuzz_seeds` (the committed
//! seeds came from it). Small on purpose: libFuzzer mutates faster the shorter its inputs.

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::GgmlDType;
use scir::model::Model;
use scir::model::config::ModelConfig;
use serde_json::{Value, json};

use super::craft::{CHAT_TEMPLATE, craft, fixture_tokenizer_dir};
use crate::util::FUZZ_SEPARATOR;

fn seeds_dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A one-layer model over the fixture tokenizer, `hidden` wide (Q8_0 blocks need 32).
fn tiniest(tied: bool, hidden: usize) -> Model {
    let cfg = ModelConfig::from_json(&json!({
        "model_type": "llama", "vocab_size": 320, "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "tie_word_embeddings": tied, "max_position_embeddings": 64,
        "bos_token_id": 1, "eos_token_id": 2,
    }))
    .unwrap();
    let dir = fixture_tokenizer_dir();
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let tc: Value =
        serde_json::from_slice(&std::fs::read(dir.join("tokenizer_config.json")).unwrap()).unwrap();
    Model::from_config(cfg, tok, tc, 7, &Device::Cpu).unwrap()
}

fn joined(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(FUZZ_SEPARATOR)
}

#[test]
#[ignore = "writes the committed fuzz seeds; run by hand"]
fn write_fuzz_seeds() {
    for (dtype, name, hidden) in [(GgmlDType::Q8_0, "q8_0", 32), (GgmlDType::F32, "f32", 8)] {
        let path = seeds_dir("gguf").join(format!("tiny_{name}.gguf"));
        craft(&path, &tiniest(true, hidden), dtype, |_| {});
    }
    let tied = tiniest(true, 8);
    let tmp = tempfile::tempdir().unwrap();
    for (model, name) in [(&tied, "tied"), (&tiniest(false, 8), "untied")] {
        let dir = tmp.path().join(name);
        model.save(&dir).unwrap();
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        let seed = joined(&[&read("config.json"), &read("model.safetensors")]);
        std::fs::write(seeds_dir("model_dir").join(name), seed).unwrap();
    }
    let fixture = fixture_tokenizer_dir();
    let read = |f: &str| std::fs::read(fixture.join(f)).unwrap();
    let (tok, tc) = (read("tokenizer.json"), read("tokenizer_config.json"));
    let dir = seeds_dir("tokenizer");
    std::fs::write(dir.join("fixture"), joined(&[&tok, &tc])).unwrap();
    let chat = joined(&[&tok, &tc, CHAT_TEMPLATE.as_bytes()]);
    std::fs::write(dir.join("fixture_chat_template"), chat).unwrap();
}
