//! Training plumbing: AdamW against torch, schedules against transformers' formulas,
//! gradient accumulation and clipping, LoRA adapters, and bit-identical save → resume.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use scir::model::lora::{LoraAdapter, LoraConfig, LoraSet, peft_name};
use scir::model::optim::{AdamW, AdamWParams, GradAccumulator, clip_grad_norm, grad_norm};
use scir::model::schedule::{LrSchedule, ScheduleKind};
use scir::model::train_state::{TrainerState, epoch_order, load_checkpoint, save_checkpoint};

fn host2(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap()
}

fn host1(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "[{i}] got {g}, want {w}"
        );
    }
}

/// Reference numbers from torch 2.15 (`foreach=False`, float64):
/// ```python
/// p1 = torch.tensor([[0.5, -1.25, 2.0], [0.1, 0.0, -0.3]], dtype=torch.float64, requires_grad=True)
/// p2 = torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True)
/// opt = torch.optim.AdamW([p1, p2], lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, foreach=False)
/// for t in range(1, 5):
///     opt.zero_grad(); (torch.sin(p1 * t).sum() + (p2 ** 3).sum() / 3 * t).backward(); opt.step()
/// ```
#[test]
fn adamw_matches_torch() {
    let dev = Device::Cpu;
    let p1 = Var::new(&[[0.5f64, -1.25, 2.0], [0.1, 0.0, -0.3]], &dev).unwrap();
    let p2 = Var::new(&[3.0f64, -2.0], &dev).unwrap();
    let params = AdamWParams {
        lr: 0.05,
        beta1: 0.8,
        beta2: 0.95,
        eps: 1e-6,
        weight_decay: 0.1,
    };
    let mut opt = AdamW::new(
        vec![("p1".into(), p1.clone()), ("p2".into(), p2.clone())],
        params,
    )
    .unwrap();
    for t in 1..5 {
        let t = t as f64;
        let loss = ((p1.as_tensor() * t)
            .unwrap()
            .sin()
            .unwrap()
            .sum_all()
            .unwrap()
            + (p2.as_tensor().powf(3.0).unwrap().sum_all().unwrap() * (t / 3.0)).unwrap())
        .unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
    let want1 = [
        0.2929316941060812,
        -1.173410293767916,
        2.0360580606497454,
        -0.09794893102236088,
        -0.19656586478750254,
        -0.4647797486115276,
    ];
    assert_close(&host1(p1.as_tensor()), &want1, 1e-12);
    assert_close(
        &host1(p2.as_tensor()),
        &[2.74369228062982, -2.1554765635227144],
        1e-12,
    );
    assert_eq!(opt.step_count(), 4);
}

#[test]
fn cosine_schedule_matches_transformers() {
    // transformers.get_cosine_schedule_with_warmup(opt, 2, 10), lr 1: steps 0..=10.
    let want = [
        0.0,
        0.5,
        1.0,
        0.9619397662556434,
        0.8535533905932737, // ½(1 + cos(π/4))
        0.6913417161825449,
        0.5,
        0.30865828381745514,
        0.14644660940672627,
        0.03806023374435663,
        0.0,
    ];
    let s = LrSchedule::new(ScheduleKind::Cosine, 1.0, 2, 10).unwrap();
    let got: Vec<f64> = (0..=10).map(|i| s.factor(i)).collect();
    assert_close(&got, &want, 1e-15);
    assert_eq!(s.factor(11), 0.0, "past the end stays at 0");
    let s = LrSchedule::new(ScheduleKind::Cosine, 3e-4, 2, 10).unwrap();
    assert!((s.lr(6) - 1.5e-4).abs() < 1e-18);
}

#[test]
fn other_schedules_by_hand() {
    let lin = LrSchedule::new(ScheduleKind::Linear, 1.0, 2, 10).unwrap();
    assert_eq!(
        [
            lin.factor(0),
            lin.factor(1),
            lin.factor(2),
            lin.factor(6),
            lin.factor(10)
        ],
        [0.0, 0.5, 1.0, 0.5, 0.0]
    );
    let cw = LrSchedule::new(ScheduleKind::ConstantWithWarmup, 1.0, 4, 10).unwrap();
    assert_eq!(
        [cw.factor(0), cw.factor(1), cw.factor(4), cw.factor(9)],
        [0.0, 0.25, 1.0, 1.0]
    );
    let c = LrSchedule::new(ScheduleKind::Constant, 2.0, 0, 10).unwrap();
    assert_eq!([c.lr(0), c.lr(10)], [2.0, 2.0]);
    // No warmup: the first step already uses the full rate.
    let nw = LrSchedule::new(ScheduleKind::Cosine, 1.0, 0, 4).unwrap();
    assert_eq!(nw.factor(0), 1.0);
    assert!(LrSchedule::new(ScheduleKind::Cosine, 1.0, 11, 10).is_err());
    assert!(LrSchedule::new(ScheduleKind::Cosine, f64::NAN, 0, 10).is_err());
}

/// Squared error of `w·x` against `y` for the rows `rows` of a fixed toy data set.
fn toy_loss(w: &Var, rows: &[usize]) -> Tensor {
    let dev = Device::Cpu;
    let xs: Vec<f32> = rows
        .iter()
        .flat_map(|&r| [r as f32 * 0.1, 1.0 - r as f32 * 0.05, 0.5])
        .collect();
    let ys: Vec<f32> = rows.iter().map(|&r| (r as f32 * 0.3).sin()).collect();
    let x = Tensor::from_vec(xs, (rows.len(), 3), &dev).unwrap();
    let y = Tensor::from_vec(ys, rows.len(), &dev).unwrap();
    let pred = x
        .matmul(&w.as_tensor().t().unwrap())
        .unwrap()
        .squeeze(1)
        .unwrap();
    (pred - y).unwrap().sqr().unwrap().mean_all().unwrap()
}

#[test]
fn accumulated_micro_batches_equal_the_full_batch() {
    let w = Var::new(&[[0.2f32, -0.1, 0.4]], &Device::Cpu).unwrap();
    let full = toy_loss(&w, &[0, 1, 2, 3]).backward().unwrap();
    let mut acc = GradAccumulator::new(vec![w.clone()]);
    acc.add(&toy_loss(&w, &[0, 1]).backward().unwrap()).unwrap();
    acc.add(&toy_loss(&w, &[2, 3]).backward().unwrap()).unwrap();
    assert_eq!(acc.micro_batches(), 2);
    let summed = acc.finish(0.5).unwrap();
    assert_close(
        &host1(summed.get(w.as_tensor()).unwrap()),
        &host1(full.get(w.as_tensor()).unwrap()),
        1e-6,
    );
    assert_eq!(acc.micro_batches(), 0);
}

#[test]
fn clipping_scales_to_the_max_norm_and_reports_the_norm() {
    let a = Var::new(&[3.0f32], &Device::Cpu).unwrap();
    let b = Var::new(&[[0.0f32, 4.0]], &Device::Cpu).unwrap();
    let vars = vec![a.clone(), b.clone()];
    let store = || {
        let mut g = GradStore::default();
        g.insert(a.as_tensor(), Tensor::new(&[3.0f32], &Device::Cpu).unwrap());
        g.insert(
            b.as_tensor(),
            Tensor::new(&[[0.0f32, 4.0]], &Device::Cpu).unwrap(),
        );
        g
    };
    let mut g = store();
    let norm = clip_grad_norm(&mut g, &vars, 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-12);
    assert!((grad_norm(&g, &vars).unwrap() - 5.0 / (5.0 + 1e-6)).abs() < 1e-6);
    assert_close(&host1(g.get(a.as_tensor()).unwrap()), &[0.6], 1e-6);
    let mut g = store();
    assert!((clip_grad_norm(&mut g, &vars, 10.0).unwrap() - 5.0).abs() < 1e-12);
    assert_eq!(
        host1(g.get(b.as_tensor()).unwrap()),
        vec![0.0, 4.0],
        "below the max: unchanged"
    );
}

/// Train `w` on the toy problem for steps `from..to`, drawing batches of 3 rows from the
/// epoch order and a random extra scaling from `rng` (to prove the RNG is restored too).
fn run_toy(w: &Var, opt: &mut AdamW, state: &mut TrainerState, rng: &mut ChaCha8Rng, steps: u64) {
    const N: usize = 10;
    const BATCH: usize = 3;
    let sched = LrSchedule::new(ScheduleKind::Cosine, 0.05, 2, 12).unwrap();
    for _ in 0..steps {
        let order = epoch_order(N, state.seed, state.epoch);
        let start = state.data_position as usize;
        let rows: Vec<usize> = order[start..(start + BATCH).min(N)].to_vec();
        state.data_position += rows.len() as u64;
        if state.data_position as usize >= N {
            state.epoch += 1;
            state.data_position = 0;
        }
        let noise = 1.0 + (rng.next_u32() % 100) as f64 / 1000.0;
        let loss = (toy_loss(w, &rows) * noise).unwrap();
        let mut grads = loss.backward().unwrap();
        clip_grad_norm(&mut grads, std::slice::from_ref(w), 0.5).unwrap();
        opt.set_lr(sched.lr(opt.step_count()));
        opt.step(&grads).unwrap();
        state.global_step = opt.step_count();
    }
    state.rng = scir::model::train_state::RngState::capture(rng);
}

fn fresh_toy() -> (Var, AdamW, TrainerState, ChaCha8Rng) {
    let w = Var::new(&[[0.2f32, -0.1, 0.4]], &Device::Cpu).unwrap();
    let params = AdamWParams {
        lr: 0.05,
        ..AdamWParams::default()
    };
    let opt = AdamW::new(vec![("w".into(), w.clone())], params).unwrap();
    let rng = ChaCha8Rng::seed_from_u64(7);
    let state = TrainerState::start(42, &rng, params);
    (w, opt, state, rng)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn save_and_resume_is_bit_identical_on_a_toy_problem() {
    // Straight run of 12 steps.
    let (w, mut opt, mut state, mut rng) = fresh_toy();
    run_toy(&w, &mut opt, &mut state, &mut rng, 12);
    let want = bits(w.as_tensor());
    // 5 steps, save, throw everything away, resume from disk, 7 more steps.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("checkpoint");
    let (w1, mut opt1, mut state1, mut rng1) = fresh_toy();
    run_toy(&w1, &mut opt1, &mut state1, &mut rng1, 5);
    save_checkpoint(&ckpt, &state1, &opt1, &[("w".into(), w1.clone())]).unwrap();
    save_checkpoint(&ckpt, &state1, &opt1, &[("w".into(), w1.clone())]).unwrap(); // overwrite is fine
    drop((w1, opt1, state1, rng1));
    let (w2, mut opt2, _, _) = fresh_toy();
    let mut state2 = load_checkpoint(&ckpt, &mut opt2, &[("w".into(), w2.clone())]).unwrap();
    let mut rng2 = state2.rng.restore().unwrap();
    assert_eq!(state2.global_step, 5);
    run_toy(&w2, &mut opt2, &mut state2, &mut rng2, 7);
    assert_eq!(
        bits(w2.as_tensor()),
        want,
        "resumed run differs from the straight run"
    );
    assert_eq!(state2, state);
    // The straight run differs from the initial weights (the test can fail).
    assert_ne!(
        want,
        bits(&Tensor::new(&[[0.2f32, -0.1, 0.4]], &Device::Cpu).unwrap())
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("checkpoint")],
        "no staging leftovers"
    );
}

#[test]
fn loading_a_mismatched_checkpoint_fails_and_changes_nothing() {
    let (w, mut opt, mut state, mut rng) = fresh_toy();
    run_toy(&w, &mut opt, &mut state, &mut rng, 2);
    let dir = tempfile::tempdir().unwrap();
    save_checkpoint(dir.path(), &state, &opt, &[("w".into(), w.clone())]).unwrap();
    let other = Var::new(&[[1.0f32, 2.0]], &Device::Cpu).unwrap();
    let mut opt2 = AdamW::new(vec![("w".into(), other.clone())], AdamWParams::default()).unwrap();
    let err = load_checkpoint(dir.path(), &mut opt2, &[("w".into(), other.clone())]).unwrap_err();
    assert!(format!("{err:#}").contains("params.safetensors"), "{err:#}");
    assert_eq!(host2(other.as_tensor()), vec![vec![1.0, 2.0]]);
    assert_eq!(opt2.step_count(), 0);
}

#[test]
fn optimizer_state_roundtrips_exactly() {
    let (w, mut opt, mut state, mut rng) = fresh_toy();
    run_toy(&w, &mut opt, &mut state, &mut rng, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opt.safetensors");
    opt.save(&path).unwrap();
    let mut opt2 = AdamW::new(vec![("w".into(), w.clone())], AdamWParams::default()).unwrap();
    opt2.load(&path).unwrap();
    assert_eq!(opt2.step_count(), 3);
    opt2.save(&dir.path().join("again.safetensors")).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(dir.path().join("again.safetensors")).unwrap()
    );
    let mut wrong = AdamW::new(vec![("v".into(), w.clone())], AdamWParams::default()).unwrap();
    assert!(wrong.load(&path).is_err(), "names must match");
}

#[test]
fn epoch_order_is_a_seeded_permutation() {
    let a = epoch_order(50, 1, 0);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    assert_eq!(a, epoch_order(50, 1, 0));
    assert_ne!(a, epoch_order(50, 1, 1));
    assert_ne!(a, epoch_order(50, 2, 0));
}

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
