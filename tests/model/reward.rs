//! Reward models (`*ForSequenceClassification`, one label): scores match transformers on
//! the committed fixtures (`tests/fixtures/models/rm_*/reference.json`, written by
//! `scripts/make_rm_fixtures.py`) alone and batched, and a saved RM reloads as one.

use candle_core::Device;
use scir::model::config::Head;
use scir::model::generate::{GenerateParams, Sampler, generate};
use scir::model::reward::rewards_vec;
use scir::model::{Adapters, Model, Weights};
use serde_json::Value;

const MODELS: [&str; 2] = ["rm_llama", "rm_qwen2"];
const REL_TOL: f64 = 1e-4;

use super::common::load_fixture as load;

fn sequences(r: &Value) -> (Vec<Vec<u32>>, Vec<f64>) {
    r["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let ids = s["ids"].as_array().unwrap();
            (
                ids.iter().map(|x| x.as_u64().unwrap() as u32).collect(),
                s["score"].as_f64().unwrap(),
            )
        })
        .unzip()
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let rel = (f64::from(g) - w).abs() / w.abs().max(1e-6);
        assert!(
            rel <= REL_TOL,
            "{what} #{i}: scir {g} vs transformers {w} ({rel:e})"
        );
    }
}

#[test]
fn reward_model_scores_match_transformers_alone_and_batched() {
    for name in MODELS {
        let (m, r) = load(name);
        assert_eq!(m.config().head, Head::Score, "{name}");
        assert_eq!(
            m.config().arch.class_name(Head::Score),
            r["architecture"],
            "{name}"
        );
        let (seqs, want) = sequences(&r);
        let pad = m.text.pad_id();
        let alone: Vec<f32> = seqs
            .iter()
            .flat_map(|s| {
                rewards_vec(&m.decoder, std::slice::from_ref(s), pad, Adapters::On, 1).unwrap()
            })
            .collect();
        assert_close(&alone, &want, &format!("{name} alone"));
        let batched = rewards_vec(&m.decoder, &seqs, pad, Adapters::On, 64).unwrap();
        assert_close(&batched, &want, &format!("{name} batched"));
    }
}

#[test]
fn a_saved_reward_model_reloads_with_the_same_scores() {
    let (m, r) = load("rm_llama");
    let out = tempfile::tempdir().unwrap();
    m.save(out.path()).unwrap();
    let back = Model::load(out.path(), Weights::Frozen, &Device::Cpu).unwrap();
    assert_eq!(back.config().head, Head::Score);
    let (seqs, want) = sequences(&r);
    let got = rewards_vec(&back.decoder, &seqs, back.text.pad_id(), Adapters::On, 64).unwrap();
    assert_close(&got, &want, "reloaded");
    let names: Vec<&str> = back.tensors().iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"score.weight") && !names.contains(&"lm_head.weight"));
}

#[test]
fn a_reward_model_cannot_generate_or_give_log_probs() {
    let (m, _) = load("rm_qwen2");
    let items = [scir::model::score::Pair {
        prompt: vec![1, 40],
        response: vec![41, 2],
    }];
    let err = scir::model::score::response_logprobs_vec(&m.decoder, &items, 0, Adapters::On, 8)
        .unwrap_err();
    assert!(err.to_string().contains("reward model"), "{err}");
    let params = GenerateParams {
        max_new_tokens: 4,
        sampler: Sampler::Greedy,
        stop_ids: m.text.stop_ids().to_vec(),
        pad_id: m.text.pad_id(),
    };
    let err = generate(&m.decoder, &[vec![1, 40]], &[0], &params, Adapters::On).unwrap_err();
    assert!(err.to_string().contains("cannot generate"), "{err}");
}
