//! LoRA adapters: peft target matching, init, merge, peft files.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use scir::model::lora::{LoraAdapter, LoraConfig, LoraSet, peft_name};

use super::{assert_close, host1};

fn lora_cfg(targets: &[&str]) -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        target_modules: targets.iter().map(|s| s.to_string()).collect(),
        use_rslora: false,
        seed: 3,
    }
}

const LINEARS: [(&str, usize, usize); 5] = [
    ("model.layers.0.self_attn.q_proj", 16, 16),
    ("model.layers.0.self_attn.k_proj", 16, 8),
    ("model.layers.0.self_attn.v_proj", 16, 8),
    ("model.layers.0.mlp.down_proj", 32, 16),
    ("lm_head", 16, 50),
];

#[test]
fn lora_targets_follow_peft_matching() {
    let c = lora_cfg(&["q_proj", "v_proj"]);
    assert!(c.targets("model.layers.0.self_attn.q_proj"));
    assert!(c.targets("q_proj"));
    assert!(
        !c.targets("model.layers.0.self_attn.qq_proj"),
        "suffix must follow a dot"
    );
    assert!(!c.targets("model.layers.0.self_attn.k_proj"));
    let all = lora_cfg(&["all-linear"]);
    assert!(all.targets("model.layers.0.mlp.down_proj") && !all.targets("lm_head"));
    let set = LoraSet::init(c, LINEARS, DType::F32, &Device::Cpu).unwrap();
    let names: Vec<_> = set.iter().map(|(m, _)| m.to_string()).collect();
    assert_eq!(
        names,
        [
            "model.layers.0.self_attn.q_proj",
            "model.layers.0.self_attn.v_proj"
        ]
    );
    let err = LoraSet::init(
        lora_cfg(&["q_proj", "qkv_proj"]),
        LINEARS,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(err.to_string().contains("qkv_proj"), "{err}");
}

#[test]
fn lora_init_is_peft_like_and_seeded() {
    let cfg = lora_cfg(&["q_proj"]);
    let a = LoraAdapter::init("m.q_proj", 64, 8, &cfg, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(a.a.dims(), [4, 64]);
    assert_eq!(a.b.dims(), [8, 4]);
    assert_eq!(a.scale, 2.0);
    let va = host1(a.a.as_tensor());
    let bound = 1.0 / 8.0;
    assert!(va.iter().all(|v| v.abs() <= bound));
    assert!(
        va.iter().any(|v| v.abs() > 0.9 * bound),
        "spread over the whole range"
    );
    assert!(host1(a.b.as_tensor()).iter().all(|v| *v == 0.0));
    let again = LoraAdapter::init("m.q_proj", 64, 8, &cfg, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(host1(again.a.as_tensor()), va);
    let other = LoraAdapter::init("m.v_proj", 64, 8, &cfg, DType::F32, &Device::Cpu).unwrap();
    assert_ne!(host1(other.a.as_tensor()), va);
    // A fresh adapter changes nothing.
    let x = Tensor::ones((2, 3, 64), DType::F32, &Device::Cpu).unwrap();
    assert!(host1(&a.delta(&x).unwrap()).iter().all(|v| *v == 0.0));
    let rs = LoraConfig {
        use_rslora: true,
        ..cfg
    };
    assert_eq!(rs.scale(), 4.0);
}

fn trained_adapter() -> LoraAdapter {
    let cfg = lora_cfg(&["q_proj"]);
    let ad = LoraAdapter::init("q_proj", 6, 5, &cfg, DType::F32, &Device::Cpu).unwrap();
    let b: Vec<f32> = (0..20).map(|i| (i as f32 * 0.37).sin()).collect();
    ad.b.set(&Tensor::from_vec(b, (5, 4), &Device::Cpu).unwrap())
        .unwrap();
    ad
}

#[test]
fn lora_merge_equals_base_plus_delta() {
    let ad = trained_adapter();
    let w: Vec<f32> = (0..30).map(|i| (i as f32 * 0.11).cos()).collect();
    let w = Tensor::from_vec(w, (5, 6), &Device::Cpu).unwrap();
    let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.1 - 0.5).collect();
    let x = Tensor::from_vec(x, (2, 6), &Device::Cpu).unwrap();
    let with_adapter = (x.matmul(&w.t().unwrap()).unwrap() + ad.delta(&x).unwrap()).unwrap();
    let merged = ad.merged_weight(&w).unwrap();
    assert_close(
        &host1(&x.matmul(&merged.t().unwrap()).unwrap()),
        &host1(&with_adapter),
        1e-5,
    );
    let mut map = BTreeMap::from([(
        "q_proj.weight".to_string(),
        w.to_dtype(DType::BF16).unwrap(),
    )]);
    let cfg = lora_cfg(&["q_proj"]);
    let set = LoraSet::init(cfg, [("q_proj", 6, 5)], DType::F32, &Device::Cpu).unwrap();
    set.get("q_proj").unwrap().b.set(ad.b.as_tensor()).unwrap();
    set.get("q_proj").unwrap().a.set(ad.a.as_tensor()).unwrap();
    set.merge_into(&mut map).unwrap();
    assert_eq!(
        map["q_proj.weight"].dtype(),
        DType::BF16,
        "merge keeps the base dtype"
    );
}

#[test]
fn lora_peft_files_roundtrip() {
    let set = LoraSet::init(
        lora_cfg(&["q_proj", "v_proj"]),
        LINEARS,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    set.get("model.layers.0.self_attn.v_proj")
        .unwrap()
        .b
        .set(&Tensor::ones((8, 4), DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    set.save_peft(dir.path(), "my/base").unwrap();
    let tensors =
        candle_core::safetensors::load(dir.path().join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    let mut keys: Vec<_> = tensors.keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
            "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
            "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight",
        ]
    );
    assert_eq!(
        peft_name("x.q_proj", "lora_A"),
        "base_model.model.x.q_proj.lora_A.weight"
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"], 8.0);
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["base_model_name_or_path"], "my/base");
    let back = LoraSet::load_peft(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(back.config().rank, 4);
    for ((m1, a1), (m2, a2)) in set.iter().zip(back.iter()) {
        assert_eq!(m1, m2);
        assert_eq!(host1(a1.a.as_tensor()), host1(a2.a.as_tensor()));
        assert_eq!(host1(a1.b.as_tensor()), host1(a2.b.as_tensor()));
        assert_eq!(a1.scale, a2.scale);
    }
}

#[test]
fn lora_bad_peft_config_is_a_clear_error() {
    let set = LoraSet::init(lora_cfg(&["q_proj"]), LINEARS, DType::F32, &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    set.save_peft(dir.path(), "base").unwrap();
    let path = dir.path().join("adapter_config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"use_dora\": false", "\"use_dora\": true");
    std::fs::write(&path, text).unwrap();
    let err = LoraSet::load_peft(dir.path(), &Device::Cpu).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("adapter_config.json") && msg.contains("use_dora"),
        "{msg}"
    );
}
