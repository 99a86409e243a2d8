//! GGUF tokenizer metadata → `tokenizer.json` + `tokenizer_config.json`.
//!
//! Read: `tokenizer.ggml.{model, pre, tokens, token_type, merges, bos/eos/unknown/
//! padding_token_id, add_bos_token, add_eos_token}` and `tokenizer.chat_template`.
//! Supported: `model = "gpt2"` (byte-level BPE) with the pre-tokenizers in [`PRE_KINDS`];
//! anything else is a user error naming the kind and what is supported.
//!
//! The tokenizer is what transformers' GGUF loader and llama.cpp build: BPE over the GGUF
//! vocabulary (tokens outside the byte-level alphabet respelled byte by byte, as
//! transformers does), merges in file order, control tokens (type 3) added as special
//! tokens and user-defined ones (type 4) as plain added tokens, a byte-level decoder, and a
//! post-processor that adds BOS/EOS only when the file says so. `smollm` splits digits one
//! by one before the GPT-2 byte-level split (llama.cpp's `\p{N}` rule, as SmolLM's own
//! tokenizer.json does).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::file::GgufFile;
use crate::user_err;

/// The tokenizer model kind scir builds.
const MODEL_KIND: &str = "gpt2";
/// Pre-tokenizer kinds (`tokenizer.ggml.pre`) scir builds for `gpt2` vocabularies.
pub const PRE_KINDS: [&str; 3] = ["smollm", "gpt-2", "default"];
/// llama.cpp token types.
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// GPT-2's byte → printable character table (`bytes_to_unicode`).
fn byte_chars() -> [char; 256] {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut out = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        out[b as usize] = if printable(b) {
            char::from_u32(b).expect("a Latin-1 code point")
        } else {
            next += 1;
            char::from_u32(next - 1).expect("a code point below 0x200")
        };
    }
    out
}

/// `token` in the byte-level alphabet: kept when it already is, else respelled per byte.
fn byte_level_spelling(token: &str, table: &[char; 256]) -> String {
    if token.chars().all(|c| table.contains(&c)) {
        token.to_string()
    } else {
        token.bytes().map(|b| table[b as usize]).collect()
    }
}

fn pre_tokenizer(kind: &str) -> Option<Value> {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    match kind {
        "smollm" => Some(json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]})),
        "gpt-2" | "default" => Some(byte_level),
        _ => None,
    }
}

/// A post-processor adding `bos`/`eos` around a sequence, or the byte-level one (no-op on ids).
fn post_processor(bos: Option<(&str, u32)>, eos: Option<(&str, u32)>) -> Value {
    if bos.is_none() && eos.is_none() {
        return json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
    }
    let special = |(t, _): (&str, u32)| json!({"SpecialToken": {"id": t, "type_id": 0}});
    let seq = |id: &str| json!({"Sequence": {"id": id, "type_id": 0}});
    let mut single: Vec<Value> = bos.into_iter().map(special).collect();
    single.push(seq("A"));
    single.extend(eos.map(special));
    let mut pair = single.clone();
    pair.extend(bos.map(special));
    pair.push(seq("B"));
    pair.extend(eos.map(special));
    let tokens: BTreeMap<&str, Value> = bos
        .into_iter()
        .chain(eos)
        .map(|(t, id)| (t, json!({"id": t, "ids": [id], "tokens": [t]})))
        .collect();
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": tokens})
}

/// The text of special token `key` (a GGUF id key) if the file names one in range.
fn special(file: &GgufFile, tokens: &[String], key: &str) -> anyhow::Result<Option<(String, u32)>> {
    let Some(id) = file.opt_u64(key)? else {
        return Ok(None);
    };
    let tok = tokens.get(id as usize).ok_or_else(|| {
        user_err!(
            "{}: {key} is {id}, beyond the {} tokens",
            file.path().display(),
            tokens.len()
        )
    })?;
    Ok(Some((tok.clone(), id as u32)))
}

fn as_ref(o: &Option<(String, u32)>) -> Option<(&str, u32)> {
    o.as_ref().map(|(t, id)| (t.as_str(), *id))
}

/// The pre-tokenizer for the file's tokenizer kind, or a user error naming what is supported.
fn checked_pre_tokenizer(file: &GgufFile) -> anyhow::Result<Value> {
    let model = file.str("tokenizer.ggml.model")?;
    let pre = file.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
    let pre_tok = (model == MODEL_KIND).then(|| pre_tokenizer(pre)).flatten();
    pre_tok.ok_or_else(|| {
        user_err!(
            "{}: tokenizer kind {model:?} with pre-tokenizer {pre:?} is not supported yet; \
             scir builds tokenizer.ggml.model \"{MODEL_KIND}\" with tokenizer.ggml.pre one of {}",
            file.path().display(),
            PRE_KINDS.join(", ")
        )
        .into()
    })
}

/// `tokenizer.ggml.merges` as `[left, right]` pairs, in file (priority) order.
fn merges(file: &GgufFile) -> anyhow::Result<Vec<Value>> {
    let path = file.path().display();
    file.opt_strs("tokenizer.ggml.merges")?
        .ok_or_else(|| user_err!("{path}: a gpt2 tokenizer needs tokenizer.ggml.merges"))?
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| json!([a, b]))
                .ok_or_else(|| user_err!("{path}: merge {m:?} is not two tokens").into())
        })
        .collect()
}

/// `(tokenizer.json, tokenizer_config.json)` for `file`.
pub fn tokenizer_files(file: &GgufFile) -> anyhow::Result<(Value, Value)> {
    let pre_tok = checked_pre_tokenizer(file)?;
    let table = byte_chars();
    let raw = file.opt_strs("tokenizer.ggml.tokens")?.ok_or_else(|| {
        user_err!(
            "{}: metadata key \"tokenizer.ggml.tokens\" is missing",
            file.path().display()
        )
    })?;
    let tokens: Vec<String> = raw.iter().map(|t| byte_level_spelling(t, &table)).collect();
    let types = file
        .opt_ints("tokenizer.ggml.token_type")?
        .unwrap_or_default();
    let merges = merges(file)?;
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let added = added_tokens(&raw, &types, &table, &vocab);
    let bos = special(file, &tokens, "tokenizer.ggml.bos_token_id")?;
    let eos = special(file, &tokens, "tokenizer.ggml.eos_token_id")?;
    let add_bos = file
        .opt_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(false);
    let add_eos = file
        .opt_bool("tokenizer.ggml.add_eos_token")?
        .unwrap_or(false);
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tok,
        "post_processor": post_processor(
            as_ref(&bos).filter(|_| add_bos),
            as_ref(&eos).filter(|_| add_eos),
        ),
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    });
    let config = tokenizer_config(file, &tokens, add_bos, add_eos)?;
    Ok((tokenizer, config))
}

/// Control tokens as special added tokens, user-defined ones as plain added tokens (both
/// matched whole, never normalised), in id order.
fn added_tokens(
    raw: &[&str],
    types: &[i64],
    table: &[char; 256],
    vocab: &serde_json::Map<String, Value>,
) -> Vec<Value> {
    raw.iter()
        .zip(types)
        .enumerate()
        .filter_map(|(id, (tok, ty))| {
            let special = match *ty {
                TOKEN_CONTROL if tok.chars().all(|c| table.contains(&c)) => true,
                TOKEN_USER_DEFINED if vocab.contains_key(*tok) => false,
                _ => return None,
            };
            Some(
                json!({"id": id, "content": tok, "single_word": false, "lstrip": false,
                        "rstrip": false, "normalized": false, "special": special}),
            )
        })
        .collect()
}

fn tokenizer_config(
    file: &GgufFile,
    tokens: &[String],
    add_bos: bool,
    add_eos: bool,
) -> anyhow::Result<Value> {
    let mut cfg = serde_json::Map::new();
    cfg.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    cfg.insert("add_bos_token".into(), json!(add_bos));
    cfg.insert("add_eos_token".into(), json!(add_eos));
    cfg.insert("clean_up_tokenization_spaces".into(), json!(false));
    for (name, key) in [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some((tok, _)) = special(file, tokens, key)? {
            cfg.insert(name.into(), json!(tok));
        }
    }
    if let Some(ctx) = file.opt_u64("llama.context_length")? {
        cfg.insert("model_max_length".into(), json!(ctx));
    }
    if let Some(t) = file.opt_str("tokenizer.chat_template")? {
        cfg.insert("chat_template".into(), json!(t));
    }
    Ok(Value::Object(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_gpt2s() {
        let t = byte_chars();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'A' as usize], 'A');
        let alphabet = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet();
        assert!(t.iter().all(|c| alphabet.contains(c)));
        assert_eq!(alphabet.len(), 256);
    }

    #[test]
    fn tokens_outside_the_alphabet_are_respelled() {
        let t = byte_chars();
        assert_eq!(byte_level_spelling("Ġhello", &t), "Ġhello");
        assert_eq!(byte_level_spelling(" a", &t), "Ġa");
    }
}
