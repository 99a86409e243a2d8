//! Checkpoints: save → load gives the same logits; f16/bf16 and sharded weights load;
//! from-scratch initialisation is deterministic; configs parse as transformers writes them.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use scir::model::config::ModelConfig;
use scir::model::{Adapters, Batch, Model, Padding, Weights};
use serde_json::json;

use super::common::{enc, family, max_rel, tiny};

fn logits(m: &Model) -> Vec<f32> {
    let b = Batch::padded(
        &[enc(&m.text, "save me"), enc(&m.text, "ok")],
        0,
        Padding::Right,
    )
    .unwrap();
    m.decoder
        .forward(&b, None, Adapters::On)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn save_then_load_gives_same_logits() {
    for m in family(7) {
        let dir = tempfile::tempdir().unwrap();
        m.save(dir.path()).unwrap();
        for w in [Weights::Trainable, Weights::Frozen] {
            let back = Model::load(dir.path(), w, &Device::Cpu).unwrap();
            assert_eq!(back.config(), m.config());
            assert_eq!(logits(&back), logits(&m));
            assert_eq!(back.text.eos_id(), Some(1));
        }
        let files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(files.iter().all(|f| !f.ends_with(".tmp")), "{files:?}");
    }
}

/// Rewrite `dir/model.safetensors` in `dtype`, split over two shards with an index.
fn rewrite_sharded(m: &Model, dir: &Path, dtype: DType) {
    m.save(dir).unwrap();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let mut weight_map = BTreeMap::new();
    let mut shards: [std::collections::HashMap<String, Tensor>; 2] = Default::default();
    for (i, (name, t)) in m.tensors().iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        weight_map.insert(name.clone(), json!(file));
        shards[i % 2].insert(name.clone(), t.to_dtype(dtype).unwrap());
    }
    for (k, shard) in shards.iter().enumerate() {
        candle_core::safetensors::save(
            shard,
            dir.join(format!("model-0000{}-of-00002.safetensors", k + 1)),
        )
        .unwrap();
    }
    let index = json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn half_precision_and_sharded_weights_load() {
    let m = tiny(8);
    for (dtype, name, tol) in [
        (DType::F32, "f32", 0.0),
        (DType::BF16, "bf16", 0.1),
        (DType::F16, "f16", 0.02),
    ] {
        let dir = tempfile::tempdir().unwrap();
        rewrite_sharded(&m, dir.path(), dtype);
        let back = Model::load(dir.path(), Weights::Trainable, &Device::Cpu).unwrap();
        assert_eq!(back.source_dtype, name);
        let (a, b) = (logits(&back), logits(&m));
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(diff <= tol, "{name}: max logit difference {diff}");
    }
}

#[test]
fn from_scratch_is_deterministic() {
    let (a, b, c) = (tiny(9), tiny(9), tiny(10));
    assert_eq!(logits(&a), logits(&b));
    assert_ne!(logits(&a), logits(&c));
    assert!(
        a.param_count() > 10_000 && a.param_count() < 200_000,
        "{}",
        a.param_count()
    );
}

#[test]
fn rope_theta_is_read_at_top_level_and_in_rope_parameters() {
    let base = json!({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
                      "num_hidden_layers": 1, "num_attention_heads": 2, "use_cache": true});
    let mut top = base.clone();
    top["rope_theta"] = json!(500000.0);
    let mut nested = base.clone();
    nested["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 250000.0});
    assert_eq!(ModelConfig::from_json(&top).unwrap().rope_theta, 500000.0);
    assert_eq!(
        ModelConfig::from_json(&nested).unwrap().rope_theta,
        250000.0
    );
    assert_eq!(ModelConfig::from_json(&base).unwrap().rope_theta, 10000.0);
    let mut qwen = base.clone();
    qwen["model_type"] = json!("qwen2");
    qwen["sliding_window"] = json!(4096);
    qwen["use_sliding_window"] = json!(false);
    let q = ModelConfig::from_json(&qwen).unwrap();
    assert!(q.qkv_bias && !q.o_bias);
    assert_eq!(ModelConfig::from_json(&q.to_hf_json()).unwrap(), q);
}

#[test]
fn trainable_weights_are_vars_of_the_varmap() {
    let m = tiny(11);
    let vars = m.varmap.all_vars();
    assert_eq!(vars.len(), m.tensors().len());
    let frozen_dir = tempfile::tempdir().unwrap();
    m.save(frozen_dir.path()).unwrap();
    let frozen = Model::load(frozen_dir.path(), Weights::Frozen, &Device::Cpu).unwrap();
    assert!(frozen.varmap.all_vars().is_empty());
    let out = frozen
        .decoder
        .forward(
            &Batch::padded(&[vec![0, 3]], 0, Padding::Right).unwrap(),
            None,
            Adapters::On,
        )
        .unwrap();
    assert!(
        out.sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(&frozen.tensors()[0].1)
            .is_none()
    );
    assert!(max_rel(&logits(&frozen), &logits(&m)) == 0.0);
}

#[test]
fn frozen_copy_keeps_the_old_weights() {
    let m = tiny(12);
    let before = logits(&m);
    let reference = m.frozen_copy().unwrap();
    assert!(reference.varmap.all_vars().is_empty());
    for var in m.varmap.all_vars() {
        var.set(&(var.as_tensor() * 1.5).unwrap()).unwrap();
    }
    assert_ne!(logits(&m), before);
    assert_eq!(logits(&reference), before);
}

/// The built-in world's preset is the design's ~0.8 M-parameter model (4 layers, d=128);
/// the ~30 M preset is what its name says.
#[test]
fn preset_sizes() {
    use scir::model::Preset;
    use scir::model::params::param_count;
    let world = param_count(&Preset::World.config(100, None, vec![]));
    assert!((750_000..850_000).contains(&world), "{world}");
    let small = param_count(&Preset::Small30M.config(8192, None, vec![]));
    assert!((28_000_000..32_000_000).contains(&small), "{small}");
}
