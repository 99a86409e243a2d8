//! Bad checkpoints: each is a `scir::Error::User` naming the file, and loading writes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use scir::model::{Model, Weights};
use serde_json::{Value, json};

use super::common::{tiny, user_msg};

/// A saved tiny model in a fresh directory.
fn saved() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    tiny(1).save(&p).unwrap();
    (dir, p)
}

fn load_err(dir: &Path) -> String {
    user_msg(Model::load(dir, Weights::Trainable, &Device::Cpu).unwrap_err())
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut Value)) {
    let path = dir.join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn missing_files_are_named() {
    let (_t, dir) = saved();
    assert!(load_err(&dir.join("nope")).contains("nope"));
    for (file, shown) in [
        ("model.safetensors", "model.safetensors.index.json"),
        ("tokenizer.json", "tokenizer.json"),
        ("config.json", "config.json"),
    ] {
        let (_t, dir) = saved();
        std::fs::remove_file(dir.join(file)).unwrap();
        let msg = load_err(&dir);
        assert!(msg.contains(shown), "{file}: {msg}");
    }
}

#[test]
fn corrupt_files_are_named() {
    for file in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        let (_t, dir) = saved();
        let before = std::fs::read_dir(&dir).unwrap().count();
        std::fs::write(dir.join(file), b"\x00garbage{").unwrap();
        let msg = load_err(&dir);
        assert!(msg.contains(file), "{file}: {msg}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            before,
            "loading wrote files"
        );
    }
}

#[test]
fn unknown_architecture_and_unsupported_features_are_rejected() {
    let cases: [(&str, Value, &str); 4] = [
        ("model_type", json!("gpt2"), "unknown architecture"),
        ("hidden_act", json!("gelu"), "hidden_act"),
        (
            "rope_scaling",
            json!({"rope_type": "llama3", "factor": 8.0}),
            "llama3",
        ),
        ("num_attention_heads", json!(3), "multiple"),
    ];
    for (key, value, want) in cases {
        let (_t, dir) = saved();
        edit_config(&dir, |v| v[key] = value.clone());
        let msg = load_err(&dir);
        assert!(
            msg.contains("config.json") && msg.contains(want),
            "{key}: {msg}"
        );
    }
    let (_t, dir) = saved();
    edit_config(&dir, |v| {
        v["model_type"] = json!("mistral");
        v["sliding_window"] = json!(4096);
    });
    assert!(load_err(&dir).contains("sliding_window"));
}

#[test]
fn vocab_mismatch_names_both_files() {
    let (_t, dir) = saved();
    edit_config(&dir, |v| v["vocab_size"] = json!(20));
    let msg = load_err(&dir);
    assert!(
        msg.contains("tokenizer.json") && msg.contains("vocab"),
        "{msg}"
    );
}

#[test]
fn unsupported_dtype_and_wrong_shapes_are_named() {
    let (_t, dir) = saved();
    let path = dir.join("model.safetensors");
    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let norm = "model.norm.weight".to_string();
    let bad = tensors[&norm].to_dtype(DType::F64).unwrap();
    tensors.insert(norm.clone(), bad);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("model.safetensors") && msg.contains("F64") && msg.contains(&norm),
        "{msg}"
    );

    tensors.insert(
        norm.clone(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &path).unwrap();
    assert!(load_err(&dir).contains("shape"));

    tensors.remove(&norm);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("missing") && msg.contains(&norm), "{msg}");
}

#[test]
fn eos_token_outside_the_vocabulary_is_named() {
    let (_t, dir) = saved();
    let path = dir.join("tokenizer_config.json");
    std::fs::write(&path, json!({"eos_token": "<|nope|>"}).to_string()).unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("tokenizer.json") && msg.contains("<|nope|>"),
        "{msg}"
    );
}
