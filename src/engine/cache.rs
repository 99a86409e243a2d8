//! Content-addressed task keys: BLAKE3 over canonical JSON of the key material.
//!
//! ```text
//! key = blake3("scir.key\0" || canonical_json(KeyMaterial))
//! KeyMaterial = { scheme, kind, version, iteration, seed, params,
//!                 inputs:    slot -> output digest of the upstream object,
//!                 externals: path -> BLAKE3 of the file's bytes,
//!                 shard:     {index, count}, only in a shard task's key }
//! ```
//!
//! Everything that may change a task's output, and nothing else: never mtimes,
//! absolute paths, run ids, thread counts or the arm (identical tasks of
//! several arms share one key). Params are the stage's own, typed and resolved,
//! so YAML comments, key order and quoting cannot change a key, and editing one
//! stage's params cannot change another's. Inputs are *content* digests, which
//! gives early cutoff: an upstream rerun that reproduces the same bytes leaves
//! downstream keys unchanged. Stage code changes enter through the stage's
//! explicit `version`; [`KEY_SCHEME`] bumps invalidate everything.
//!
//! Canonical JSON: object keys sorted by byte order, no whitespace, numbers as
//! serde_json prints them (so `1` and `1.0` differ, but typed params make a
//! float field always print as a float), strings not Unicode-normalised.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod statcache;

/// Version of the key scheme; bump to invalidate every object.
pub const KEY_SCHEME: u32 = 1;
const KEY_DOMAIN: &[u8] = b"scir.key\0";
const SEED_DOMAIN: &[u8] = b"scir.seed\0";
const DIGEST_DOMAIN: &[u8] = b"scir.outputs\0";
const IDENTITY_DOMAIN: &[u8] = b"scir.identity\0";

/// Everything that determines a task's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyMaterial {
    pub scheme: u32,
    pub kind: String,
    pub version: u32,
    pub iteration: u32,
    pub seed: u64,
    pub params: Value,
    /// Input slot → output digest of the upstream object.
    pub inputs: BTreeMap<String, String>,
    /// External file (as named in params) → BLAKE3 of its bytes.
    pub externals: BTreeMap<String, String>,
    /// A shard task's shard (absent for every other task, so their keys are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::engine::shard::Shard>,
}

impl KeyMaterial {
    /// The key material of a shard's merged task (the unsharded task): without the shard.
    pub fn merged(&self) -> KeyMaterial {
        KeyMaterial {
            shard: None,
            ..self.clone()
        }
    }

    /// The task key (hex).
    pub fn key(&self) -> String {
        let value = serde_json::to_value(self).expect("key material serializes");
        digest_json(KEY_DOMAIN, &value)
    }
}

/// Serialize a JSON value canonically (sorted keys, no whitespace).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Hex BLAKE3 of `domain || canonical_json(value)`.
pub fn digest_json(domain: &[u8], value: &Value) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(domain);
    hasher.update(canonical_json(value).as_bytes());
    hasher.finalize().to_hex().to_string()
}

/// The digest of an object's outputs: over its files' relative paths and digests.
pub fn output_digest(files: &BTreeMap<String, String>) -> String {
    let value = serde_json::to_value(files).expect("a string map serializes");
    digest_json(DIGEST_DOMAIN, &value)
}

/// A task's static identity (before any content is known): two tasks with the
/// same identity compute the same thing and become one node of the DAG.
pub fn identity(
    kind: &str,
    iteration: u32,
    seed: u64,
    params: &Value,
    inputs: &BTreeMap<String, String>,
) -> String {
    let value = serde_json::json!({
        "kind": kind, "iteration": iteration, "seed": seed, "params": params, "inputs": inputs,
    });
    digest_json(IDENTITY_DOMAIN, &value)
}

/// The seed of task `stage@iteration` derived from the pipeline's seed. It
/// does not depend on the arm, so identical tasks of several arms agree.
pub fn derive_seed(pipeline_seed: u64, stage: &str, iteration: u32) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(SEED_DOMAIN);
    hasher.update(&pipeline_seed.to_le_bytes());
    hasher.update(stage.as_bytes());
    hasher.update(&[0]);
    hasher.update(&iteration.to_le_bytes());
    let bytes = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// Field-by-field differences between two key materials (`path: old → new`).
pub fn diff(old: &KeyMaterial, new: &KeyMaterial) -> Vec<String> {
    let (a, b) = (
        serde_json::to_value(old).unwrap_or_default(),
        serde_json::to_value(new).unwrap_or_default(),
    );
    let mut out = Vec::new();
    diff_values("", &a, &b, &mut out);
    out
}

fn diff_values(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => diff_values(&sub, va, vb, out),
                    (None, Some(vb)) => out.push(format!("{sub}: (absent) → {}", short(vb))),
                    (Some(va), None) => out.push(format!("{sub}: {} → (absent)", short(va))),
                    (None, None) => {}
                }
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: {} → {}", short(a), short(b))),
    }
}

const SHORT_LEN: usize = 60;

fn short(v: &Value) -> String {
    let s = canonical_json(v);
    if s.chars().count() > SHORT_LEN {
        format!("{}…", s.chars().take(SHORT_LEN).collect::<String>())
    } else {
        s
    }
}

/// The first characters of a key, as shown to people.
pub fn short_key(key: &str) -> &str {
    &key[..key.len().min(SHORT_KEY)]
}

/// Characters of a key shown by [`short_key`].
const SHORT_KEY: usize = 12;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn map_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":[1,2]}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":[1,2],"y":2},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"x":[1,2],"y":2},"b":1}"#);
    }

    #[test]
    fn int_and_float_differ_and_unicode_is_not_normalised() {
        assert_ne!(canonical_json(&json!(1)), canonical_json(&json!(1.0)));
        // "é" precomposed vs e + combining acute.
        assert_ne!(
            canonical_json(&json!("\u{e9}")),
            canonical_json(&json!("e\u{301}"))
        );
    }

    #[test]
    fn seeds_depend_on_stage_and_iteration() {
        assert_ne!(derive_seed(1, "a", 1), derive_seed(1, "a", 2));
        assert_ne!(derive_seed(1, "a", 1), derive_seed(1, "b", 1));
        assert_ne!(derive_seed(1, "a", 1), derive_seed(2, "a", 1));
        assert_eq!(derive_seed(1, "a", 1), derive_seed(1, "a", 1));
    }

    #[test]
    fn diff_names_fields() {
        let m = KeyMaterial {
            scheme: 1,
            kind: "k".into(),
            version: 1,
            iteration: 0,
            seed: 3,
            params: json!({"lr": 0.1, "n": 2}),
            inputs: BTreeMap::new(),
            externals: BTreeMap::new(),
            shard: None,
        };
        let mut n = m.clone();
        n.params = json!({"lr": 0.2, "n": 2});
        n.version = 2;
        assert_eq!(diff(&m, &n), vec!["params.lr: 0.1 → 0.2", "version: 1 → 2"]);
        assert_ne!(m.key(), n.key());
    }
}
