//! Bad GGUF files: each import is a `scir::Error::User` naming the file and what is
//! supported, and nothing is written (no `--out`, no staging directory left behind).

use std::path::Path;

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Value as G;
use scir::model::gguf::import;

use super::craft::{craft, set, tiny_llama, user_msg};

/// Import `gguf` into `<dir>/out`; the user error's message. Checks nothing was written.
fn import_err(dir: &Path, gguf: &Path) -> String {
    let before: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let out = dir.join("out");
    let msg = user_msg(import(gguf, &out).unwrap_err());
    assert!(!out.exists(), "{msg}");
    let after: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before, after, "the import left files behind: {msg}");
    assert!(
        msg.contains(&gguf.display().to_string()),
        "no file name in: {msg}"
    );
    msg
}

/// A valid crafted GGUF (tiny Llama, Q8_0) with `edit` applied to its metadata.
fn crafted(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<(String, G)>)) -> std::path::PathBuf {
    let p = dir.join(name);
    craft(&p, &tiny_llama(true, 1), GgmlDType::Q8_0, edit);
    p
}

#[test]
fn not_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        (
            "model.safetensors",
            &b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "[..],
        ),
        ("empty.gguf", &b""[..]),
        ("short.gguf", &b"GG"[..]),
    ] {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let msg = import_err(tmp.path(), &p);
        assert!(msg.contains("not a GGUF file"), "{msg}");
    }
    let missing = tmp.path().join("missing.gguf");
    assert!(
        user_msg(import(&missing, &tmp.path().join("out")).unwrap_err()).contains("cannot open")
    );
}

#[test]
fn truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let full = std::fs::read(crafted(tmp.path(), "full.gguf", |_| {})).unwrap();
    // Inside the counts, the metadata, the tensor index, and the tensor data (the last
    // tensor is followed by < 32 bytes of alignment padding, which a reader never needs).
    for cut in [6, 20, 200, full.len() / 2, full.len() - 33] {
        let p = tmp.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&p, &full[..cut]).unwrap();
        let msg = import_err(tmp.path(), &p);
        assert!(msg.contains("truncated or corrupt"), "cut at {cut}: {msg}");
        std::fs::remove_file(&p).unwrap();
    }
}

/// A minimal GGUF v3 by hand: one 32-element tensor of ggml type `ty`, no metadata.
fn one_tensor_gguf(ty: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(b"GGUF");
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(0u64.to_le_bytes()); // metadata entries
    let name = b"token_embd.weight";
    b.extend((name.len() as u64).to_le_bytes());
    b.extend(name);
    b.extend(1u32.to_le_bytes()); // dimensions
    b.extend(32u64.to_le_bytes());
    b.extend(ty.to_le_bytes());
    b.extend(0u64.to_le_bytes()); // offset
    b.resize(b.len().div_ceil(32) * 32 + 256, 0);
    b
}

#[test]
fn unsupported_quantisation() {
    let tmp = tempfile::tempdir().unwrap();
    // 16 is IQ2_XXS, 20 IQ4_NL: i-quants candle cannot dequantise.
    for ty in [16u32, 20] {
        let p = tmp.path().join(format!("iq{ty}.gguf"));
        std::fs::write(&p, one_tensor_gguf(ty)).unwrap();
        let msg = import_err(tmp.path(), &p);
        assert!(msg.contains(&format!("ggml type {ty}")), "{msg}");
        assert!(msg.contains("Q4_1") && msg.contains("Q8_0"), "{msg}");
        std::fs::remove_file(&p).unwrap();
    }
}

#[test]
fn unsupported_tokenizer_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let s = |x: &str| G::String(x.into());
    let p = crafted(tmp.path(), "spm.gguf", |m| {
        set(m, "tokenizer.ggml.model", s("llama"))
    });
    let msg = import_err(tmp.path(), &p);
    assert!(msg.contains("\"llama\"") && msg.contains("gpt2"), "{msg}");
    let p = crafted(tmp.path(), "qwen.gguf", |m| {
        set(m, "tokenizer.ggml.pre", s("qwen2"))
    });
    let msg = import_err(tmp.path(), &p);
    assert!(msg.contains("\"qwen2\"") && msg.contains("smollm"), "{msg}");
}

#[test]
fn unsupported_models() {
    let tmp = tempfile::tempdir().unwrap();
    let s = |x: &str| G::String(x.into());
    let p = crafted(tmp.path(), "arch.gguf", |m| {
        set(m, "general.architecture", s("gemma2"))
    });
    let msg = import_err(tmp.path(), &p);
    assert!(
        msg.contains("\"gemma2\"") && msg.contains("\"llama\""),
        "{msg}"
    );
    let p = crafted(tmp.path(), "yarn.gguf", |m| {
        set(m, "llama.rope.scaling.type", s("yarn"))
    });
    assert!(import_err(tmp.path(), &p).contains("rope scaling"));
    // Metadata that disagrees with the tensors.
    let p = crafted(tmp.path(), "heads.gguf", |m| {
        set(m, "llama.feed_forward_length", G::U32(64))
    });
    assert!(import_err(tmp.path(), &p).contains("shape"));
    let p = crafted(tmp.path(), "nokey.gguf", |m| {
        m.retain(|(k, _)| k != "llama.block_count")
    });
    assert!(import_err(tmp.path(), &p).contains("llama.block_count"));
}

#[test]
fn existing_out_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let p = crafted(tmp.path(), "ok.gguf", |_| {});
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let msg = user_msg(import(&p, &out).unwrap_err());
    assert!(msg.contains("not empty"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
    // An empty directory is replaced by the import.
    std::fs::remove_file(out.join("keep.txt")).unwrap();
    import(&p, &out).unwrap();
    assert!(out.join("model.safetensors").is_file());
}
