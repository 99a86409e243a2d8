//! Parity of the imported SmolLM2-135M-Instruct (Q4_1 GGUF) with transformers loading the
//! same file (`tests/fixtures/gguf/smollm2_reference.json`, written by
//! `scripts/make_gguf_fixtures.py`): chat-templated prompt ids and tokenizer ids equal,
//! response log-prob sums within 1e-3 relative, greedy ids equal.
//!
//! Needs `examples/smollm2/setup.sh` to have run (the 540 MB model is never committed); the
//! test skips with a message when `examples/smollm2/model/` is absent (as in CI).

use std::path::PathBuf;

use candle_core::Device;
use scir::model::generate::{GenerateParams, Sampler, generate};
use scir::model::score::{Pair, response_logprobs_vec};
use scir::model::{Adapters, Message, Model, Weights};
use serde_json::Value;

const REL_TOL: f64 = 1e-3;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
#[ignore = "needs the 98 MB SmolLM2 model: run examples/smollm2/setup.sh, then cargo test -- --ignored smollm2"]
fn smollm2_matches_transformers() {
    let dir = root().join("examples/smollm2/model");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is not there; run examples/smollm2/setup.sh",
        dir.display()
    );
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/gguf/smollm2_reference.json"))
            .unwrap(),
    )
    .unwrap();
    let m = Model::load(&dir, Weights::Frozen, &Device::Cpu).unwrap();
    for t in reference["tokenizer_texts"].as_array().unwrap() {
        let text = t["text"].as_str().unwrap();
        assert_eq!(
            m.text.encode_response(text, false).unwrap(),
            ids(&t["ids"]),
            "{text:?}"
        );
    }
    let new_tokens = reference["greedy_new_tokens"].as_u64().unwrap() as usize;
    let mut worst = 0.0f64;
    for case in reference["cases"].as_array().unwrap() {
        let messages: Vec<Message> = case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| serde_json::from_value(x.clone()).unwrap())
            .collect();
        let prompt = m.text.encode_chat_prompt(&messages).unwrap();
        assert_eq!(
            m.text.render_chat(&messages, true).unwrap(),
            case["prompt_text"].as_str().unwrap()
        );
        assert_eq!(prompt, ids(&case["prompt_ids"]));
        let response = m
            .text
            .encode_response(case["response"].as_str().unwrap(), true)
            .unwrap();
        assert_eq!(response, ids(&case["response_ids"]));
        let pair = Pair {
            prompt: prompt.clone(),
            response,
        };
        let got = response_logprobs_vec(&m.decoder, &[pair], m.text.pad_id(), Adapters::On, 1)
            .unwrap()[0] as f64;
        let want = case["response_logprob"].as_f64().unwrap();
        let rel = (got - want).abs() / want.abs();
        worst = worst.max(rel);
        eprintln!("log-prob scir {got:.6} transformers {want:.6} relative {rel:.2e}");
        assert!(
            rel <= REL_TOL,
            "log-prob {got} vs transformers {want} (relative {rel:e})"
        );
        let params = GenerateParams {
            max_new_tokens: new_tokens,
            sampler: Sampler::Greedy,
            stop_ids: m.text.stop_ids().to_vec(),
            pad_id: m.text.pad_id(),
        };
        let out = generate(&m.decoder, &[prompt], &[0], &params, Adapters::On).unwrap();
        assert_eq!(out[0].token_ids, ids(&case["greedy_ids"]));
    }
    eprintln!("worst relative log-prob difference: {worst:.2e}");
}
