//! Parity with Hugging Face transformers on the committed fixtures
//! (`tests/fixtures/models/<name>/reference.json`, see `tests/fixtures/README.md`):
//! log-probs within 1e-4 relative, logits close, greedy ids equal (alone and batched),
//! batched scoring equal to one by one, chat templates rendered identically.

use candle_core::IndexOp;
use scir::model::generate::{GenerateParams, Sampler, generate};
use scir::model::score::{Pair, response_logprobs_vec};
use scir::model::{Adapters, Batch, Message, Model, Padding};
use serde_json::Value;

const MODELS: [&str; 4] = ["llama_tied", "qwen2_bias", "mistral_gqa", "llama_gqa_bf16"];
const REL_TOL: f64 = 1e-4;

use super::common::load_fixture as load;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn close(got: f64, want: f64, what: &str) {
    let rel = (got - want).abs() / want.abs().max(1e-6);
    assert!(
        rel <= REL_TOL,
        "{what}: scir {got} vs transformers {want} (relative {rel:e})"
    );
}

#[test]
fn config_and_tokens_match() {
    for name in MODELS {
        let (m, r) = load(name);
        let c = m.config();
        let rc = &r["config"];
        assert_eq!(c.arch.class_name(c.head), r["architecture"], "{name}");
        assert_eq!(c.rope_theta, rc["rope_theta"].as_f64().unwrap(), "{name}");
        assert_eq!(
            c.num_kv_heads as u64,
            rc["num_key_value_heads"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            c.tie_word_embeddings,
            rc["tie_word_embeddings"].as_bool().unwrap(),
            "{name}"
        );
        assert_eq!(c.qkv_bias, rc["qkv_bias"].as_bool().unwrap(), "{name}");
        assert_eq!(m.text.eos_id(), Some(2));
        for p in r["pairs"].as_array().unwrap() {
            assert_eq!(
                m.text.encode_prompt(p["prompt"].as_str().unwrap()).unwrap(),
                ids(&p["prompt_ids"])
            );
            assert_eq!(
                m.text
                    .encode_response(p["response"].as_str().unwrap(), false)
                    .unwrap(),
                ids(&p["response_ids"])
            );
        }
    }
}

#[test]
fn logprobs_match_transformers() {
    for name in MODELS {
        let (m, r) = load(name);
        for (i, p) in r["pairs"].as_array().unwrap().iter().enumerate() {
            let prompt = ids(&p["prompt_ids"]);
            let resp = ids(&p["response_ids"]);
            let with_eos = [resp.clone(), vec![2]].concat();
            let items = [
                Pair {
                    prompt: prompt.clone(),
                    response: resp,
                },
                Pair {
                    prompt,
                    response: with_eos,
                },
            ];
            let got = response_logprobs_vec(&m.decoder, &items, 0, Adapters::On, 1).unwrap();
            close(
                got[0] as f64,
                p["logprob"].as_f64().unwrap(),
                &format!("{name} pair {i}"),
            );
            close(
                got[1] as f64,
                p["logprob_eos"].as_f64().unwrap(),
                &format!("{name} pair {i} +eos"),
            );
        }
    }
}

#[test]
fn logits_match_transformers() {
    for name in MODELS {
        let (m, r) = load(name);
        let seq = ids(&r["logits"]["ids"]);
        let out = m
            .decoder
            .forward(
                &Batch::padded(&[seq], 0, Padding::Right).unwrap(),
                None,
                Adapters::On,
            )
            .unwrap();
        let got = out.i(0).unwrap().to_vec2::<f32>().unwrap();
        let want = r["logits"]["values"].as_array().unwrap();
        for (t, (g, w)) in got.iter().zip(want).enumerate() {
            for (v, (a, b)) in g.iter().zip(w.as_array().unwrap()).enumerate() {
                let b = b.as_f64().unwrap();
                let diff = (*a as f64 - b).abs();
                assert!(
                    diff <= 1e-4 * (1.0 + b.abs()),
                    "{name} logits[{t}][{v}]: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn batched_scoring_matches_transformers_and_one_by_one() {
    for name in MODELS {
        let (m, r) = load(name);
        let b = &r["batch"];
        let items: Vec<Pair> = b["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .zip(b["attention_mask"].as_array().unwrap())
            .zip(b["response_start"].as_array().unwrap())
            .map(|((row, mask), start)| {
                let n = mask
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|x| x.as_u64() == Some(1))
                    .count();
                let row = &ids(row)[..n];
                let s = start.as_u64().unwrap() as usize;
                Pair {
                    prompt: row[..s].to_vec(),
                    response: row[s..].to_vec(),
                }
            })
            .collect();
        let together =
            response_logprobs_vec(&m.decoder, &items, 0, Adapters::On, items.len()).unwrap();
        let alone = response_logprobs_vec(&m.decoder, &items, 0, Adapters::On, 1).unwrap();
        for (i, want) in b["logprobs"].as_array().unwrap().iter().enumerate() {
            close(
                together[i] as f64,
                want.as_f64().unwrap(),
                &format!("{name} batch row {i}"),
            );
            close(
                together[i] as f64,
                alone[i] as f64,
                &format!("{name} batched vs alone row {i}"),
            );
        }
    }
}

fn greedy(m: &Model, n: usize) -> GenerateParams {
    GenerateParams {
        max_new_tokens: n,
        sampler: Sampler::Greedy,
        stop_ids: m.text.stop_ids().to_vec(),
        pad_id: m.text.pad_id(),
    }
}

#[test]
fn greedy_ids_match_transformers_alone_and_batched() {
    for name in MODELS {
        let (m, r) = load(name);
        for g in r["greedy"].as_array().unwrap() {
            let p = greedy(&m, g["max_new_tokens"].as_u64().unwrap() as usize);
            let out =
                generate(&m.decoder, &[ids(&g["prompt_ids"])], &[0], &p, Adapters::On).unwrap();
            assert_eq!(
                out[0].token_ids,
                ids(&g["generated_ids"]),
                "{name} pair {}",
                g["pair_index"]
            );
            assert_eq!(
                out[0].stopped,
                g["stopped_at_eos"].as_bool().unwrap(),
                "{name}"
            );
        }
        let gb = &r["greedy_batch"];
        let prompts: Vec<Vec<u32>> = gb["pair_indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| ids(&r["pairs"][i.as_u64().unwrap() as usize]["prompt_ids"]))
            .collect();
        let p = greedy(&m, gb["max_new_tokens"].as_u64().unwrap() as usize);
        let out = generate(
            &m.decoder,
            &prompts,
            &vec![0; prompts.len()],
            &p,
            Adapters::On,
        )
        .unwrap();
        for (row, want) in out.iter().zip(gb["generated_ids"].as_array().unwrap()) {
            assert_eq!(row.token_ids, ids(want), "{name} batched greedy");
        }
    }
}

#[test]
fn chat_templates_render_like_transformers() {
    let mut seen = 0;
    for name in MODELS {
        let (m, r) = load(name);
        let Some(ct) = r.get("chat_template") else {
            assert!(m.text.chat_template().is_none(), "{name}");
            continue;
        };
        seen += 1;
        let msgs: Vec<Message> = serde_json::from_value(ct["messages"].clone()).unwrap();
        assert_eq!(
            m.text.render_chat(&msgs, true).unwrap(),
            ct["text"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            m.text.encode_chat_prompt(&msgs).unwrap(),
            ids(&ct["ids"]),
            "{name}"
        );
    }
    assert_eq!(seen, 2);
}
