//! Training on small decoders: gradients reach every tensor through the SCIR objective
//! (through both reward paths), finite differences agree, a tiny model overfits, LoRA
//! trains while the base stays bit-identical, and save → resume is bit-identical.

use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use scir::loss::{
    ConsistencyGrad, ConsistencyKind, LogBernoulli, PairLogps, ScirLossConfig, scir_loss,
};
use scir::model::bench::synthetic_tokenizer;
use scir::model::config::{Arch, ModelConfig, Preset};
use scir::model::lora::{LoraConfig, LoraSet};
use scir::model::optim::AdamWParams;
use scir::model::schedule::{LrSchedule, ScheduleKind};
use scir::model::score::{Pair, response_logprobs};
use scir::model::train_state::{TrainerState, epoch_order, load_checkpoint, save_checkpoint};
use scir::model::trainer::{Stepper, varmap_vars, verdict_logit_gaps};
use scir::model::{Adapters, Batch, Model, Padding};
use serde_json::json;

const VOCAB: usize = 40;
const PAD: u32 = 0;
/// Verdict tokens of the toy judge.
const VERDICT: (u32, u32) = (1, 2);

/// A small Qwen2-style config (q/k/v biases, untied head, GQA).
fn config() -> ModelConfig {
    let mut cfg = Preset::Tiny.config(VOCAB, None, vec![]);
    cfg.arch = Arch::Qwen2;
    cfg.qkv_bias = true;
    cfg.tie_word_embeddings = false;
    cfg.hidden_size = 32;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.head_dim = 8;
    cfg.intermediate_size = 48;
    cfg
}

fn model(seed: u64) -> Model {
    Model::from_config(
        config(),
        synthetic_tokenizer(VOCAB).unwrap(),
        json!({}),
        seed,
        &Device::Cpu,
    )
    .unwrap()
}

/// Deterministic ids in `3..VOCAB`.
fn ids(n: usize, salt: usize) -> Vec<u32> {
    (0..n)
        .map(|i| (3 + (i * 17 + salt * 29 + i * i * salt) % (VOCAB - 3)) as u32)
        .collect()
}

/// A prompt with two responses: `(x, y1, y2)`.
type Triple = (Vec<u32>, Vec<u32>, Vec<u32>);

/// Three prompts with two responses each.
fn pairs() -> Vec<Triple> {
    (0..3)
        .map(|k| (ids(4 + k, k + 1), ids(3 + k, k + 7), ids(5 - k, k + 11)))
        .collect()
}

/// The toy judge prompt: `x · A-marker · a · B-marker · b`.
fn judge_prompt(x: &[u32], a: &[u32], b: &[u32]) -> Vec<u32> {
    [x, &[VERDICT.0], a, &[VERDICT.1], b].concat()
}

fn host(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// Log-probs of y1 and y2 under the model, `(n,)` each.
fn policy_logps(m: &Model, adapters: Adapters) -> (Tensor, Tensor) {
    let ps = pairs();
    let items = |pick: fn(&Triple) -> &Vec<u32>| -> Vec<Pair> {
        ps.iter()
            .map(|p| Pair {
                prompt: p.0.clone(),
                response: pick(p).clone(),
            })
            .collect()
    };
    (
        response_logprobs(&m.decoder, &items(|p| &p.1), PAD, adapters).unwrap(),
        response_logprobs(&m.decoder, &items(|p| &p.2), PAD, adapters).unwrap(),
    )
}

/// The GRM's q with position swap.
fn grm(m: &Model, adapters: Adapters) -> LogBernoulli {
    let ps = pairs();
    let ab: Vec<Vec<u32>> = ps.iter().map(|p| judge_prompt(&p.0, &p.1, &p.2)).collect();
    let ba: Vec<Vec<u32>> = ps.iter().map(|p| judge_prompt(&p.0, &p.2, &p.1)).collect();
    let gab = verdict_logit_gaps(&m.decoder, &ab, VERDICT, PAD, adapters).unwrap();
    let gba = verdict_logit_gaps(&m.decoder, &ba, VERDICT, PAD, adapters).unwrap();
    LogBernoulli::grm_pairwise(&gab, Some(&gba)).unwrap()
}

fn loss_cfg() -> ScirLossConfig {
    ScirLossConfig {
        beta: 0.5,
        irm_beta: 0.5,
        lambda: 1.0,
        gamma: 0.1,
        delta: 0.0,
        kind: ConsistencyKind::SymmetricKl,
        grad: ConsistencyGrad::Both,
    }
}

/// Fixed reference log-probs `(y1, y2)`: model 0's, with y1 shifted so p sits clearly away
/// from ½. Constants: they must not move when a test perturbs the trained model.
fn refs() -> (Tensor, Tensor) {
    let (py1, py2) = policy_logps(&model(0), Adapters::On);
    let shift = Tensor::new(&[2.0f32, -2.0, 3.0], &Device::Cpu).unwrap();
    ((py1.detach() - &shift).unwrap(), py2.detach())
}

/// The SCIR objective on the toy pairs; `detach_irm` / `detach_grm` cut the policy
/// log-probs / the judge.
fn objective(
    m: &Model,
    refs: &(Tensor, Tensor),
    cfg: &ScirLossConfig,
    detach_irm: bool,
    detach_grm: bool,
) -> Tensor {
    let (py1, py2) = policy_logps(m, Adapters::On);
    let (py1, py2) = if detach_irm {
        (py1.detach(), py2.detach())
    } else {
        (py1, py2)
    };
    let q = grm(m, Adapters::On);
    let q = if detach_grm { q.detach() } else { q };
    let logps = PairLogps {
        policy_y1: py1,
        policy_y2: py2,
        dpo_ref_y1: refs.0.clone(),
        dpo_ref_y2: refs.1.clone(),
        irm_ref_y1: refs.0.clone(),
        irm_ref_y2: refs.1.clone(),
    };
    scir_loss(&logps, &q, cfg).unwrap().loss
}

fn nonzero_finite(g: Option<&Tensor>) -> bool {
    g.is_some_and(|g| {
        let v = host(g);
        v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0)
    })
}

#[test]
fn scir_objective_reaches_every_trainable_tensor() {
    let m = model(1);
    let r = refs();
    let grads = objective(&m, &r, &loss_cfg(), false, false)
        .backward()
        .unwrap();
    let vars = varmap_vars(&m.varmap).unwrap();
    assert_eq!(vars.len(), m.tensors().len());
    for (name, v) in &vars {
        assert!(
            nonzero_finite(grads.get(v.as_tensor())),
            "{name}: no non-zero finite gradient"
        );
    }
}

#[test]
fn consistency_loss_trains_through_each_reward_path() {
    let m = model(2);
    let r = refs();
    let vars = varmap_vars(&m.varmap).unwrap();
    let lm_head = &vars.iter().find(|(n, _)| n == "lm_head.weight").unwrap().1;
    let embed = &vars
        .iter()
        .find(|(n, _)| n == "model.embed_tokens.weight")
        .unwrap()
        .1;
    // Only the judge prompt path (policy log-probs cut): gradient still reaches the model.
    let grads = objective(&m, &r, &loss_cfg(), true, false)
        .backward()
        .unwrap();
    assert!(
        nonzero_finite(grads.get(lm_head.as_tensor()))
            && nonzero_finite(grads.get(embed.as_tensor()))
    );
    // Only the response log-prob path (judge cut): likewise.
    let grads = objective(&m, &r, &loss_cfg(), false, true)
        .backward()
        .unwrap();
    assert!(
        nonzero_finite(grads.get(lm_head.as_tensor()))
            && nonzero_finite(grads.get(embed.as_tensor()))
    );
    // irm_only with the policy cut: nothing is left to train.
    let cfg = ScirLossConfig {
        grad: ConsistencyGrad::IrmOnly,
        ..loss_cfg()
    };
    let grads = objective(&m, &r, &cfg, true, false).backward().unwrap();
    assert!(vars.iter().all(|(_, v)| grads.get(v.as_tensor()).is_none()));
}

/// Central differences in f32 (loose tolerance) for the largest-gradient entry of a few tensors.
#[test]
fn scir_objective_matches_finite_differences() {
    let m = model(3);
    let r = refs();
    let cfg = loss_cfg();
    let q = grm(&m, Adapters::On).host_probs().unwrap();
    assert!(
        q.iter().all(|q| (q - 0.5).abs() > 1e-3),
        "no pair may sit on the selection boundary: {q:?}"
    );
    let grads = objective(&m, &r, &cfg, false, false).backward().unwrap();
    let vars = varmap_vars(&m.varmap).unwrap();
    for name in [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
        "lm_head.weight",
    ] {
        let var = &vars.iter().find(|(n, _)| n == name).unwrap().1;
        let g = host(grads.get(var.as_tensor()).unwrap());
        let i = (0..g.len())
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap();
        let orig = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let at = |d: f32| {
            let mut v = orig.clone();
            v[i] += d;
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            objective(&m, &r, &cfg, false, false)
                .to_scalar::<f64>()
                .unwrap()
        };
        let eps = 1e-2f32;
        let fd = (at(eps) - at(-eps)) / (2.0 * eps as f64);
        var.set(&Tensor::from_vec(orig, var.shape(), &Device::Cpu).unwrap())
            .unwrap();
        assert!(
            (fd - g[i]).abs() <= 0.02 * g[i].abs() + 1e-3,
            "{name}[{i}]: autograd {} vs numeric {fd}",
            g[i]
        );
    }
}

/// Mean per-token negative log-likelihood of `seqs` (first token as the prompt).
fn nll(m: &Model, seqs: &[Vec<u32>], adapters: Adapters) -> Tensor {
    let items: Vec<Pair> = seqs
        .iter()
        .map(|s| Pair {
            prompt: s[..1].to_vec(),
            response: s[1..].to_vec(),
        })
        .collect();
    let tokens: usize = seqs.iter().map(|s| s.len() - 1).sum();
    (response_logprobs(&m.decoder, &items, PAD, adapters)
        .unwrap()
        .sum_all()
        .unwrap()
        .neg()
        .unwrap()
        / tokens as f64)
        .unwrap()
}

fn stepper(vars: Vec<(String, Var)>, lr: f64, total: u64) -> Stepper {
    let params = AdamWParams {
        lr,
        weight_decay: 0.0,
        ..AdamWParams::default()
    };
    let schedule = LrSchedule::new(ScheduleKind::Cosine, lr, total / 10, total).unwrap();
    Stepper::new(vars, params, schedule, Some(1.0)).unwrap()
}

/// Loss after overfitting; the initial loss is ≈ ln 40 ≈ 3.7 nats per token.
const OVERFIT_NLL: f64 = 0.05;

#[test]
fn tiny_model_from_scratch_overfits_a_few_sequences() {
    let m = model(4);
    let seqs: Vec<Vec<u32>> = (0..4).map(|k| ids(12, k + 3)).collect();
    let steps = 150;
    let mut st = stepper(varmap_vars(&m.varmap).unwrap(), 1e-2, steps);
    let first = nll(&m, &seqs, Adapters::On).to_scalar::<f32>().unwrap();
    for _ in 0..steps {
        st.accumulate(&nll(&m, &seqs, Adapters::On).backward().unwrap())
            .unwrap();
        st.step().unwrap();
    }
    let last = nll(&m, &seqs, Adapters::On).to_scalar::<f32>().unwrap() as f64;
    assert!(first > 3.0, "initial loss {first}");
    assert!(
        last < OVERFIT_NLL,
        "loss {first} → {last}, want < {OVERFIT_NLL}"
    );
}

fn bits(m: &Model) -> Vec<(String, Vec<u32>)> {
    m.tensors()
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect(),
            )
        })
        .collect()
}

fn logits(m: &Model, adapters: Adapters) -> Vec<f32> {
    let batch = Batch::padded(&[ids(9, 5), ids(6, 2)], PAD, Padding::Right).unwrap();
    m.decoder
        .forward(&batch, None, adapters)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn lora_cfg() -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        target_modules: vec!["all-linear".into()],
        use_rslora: false,
        seed: 9,
    }
}

#[test]
fn lora_trains_while_base_weights_stay_bit_identical() {
    // A from-scratch model's head is too small (init std 0.02) for LoRA on the inner
    // projections to move its logits far: pre-train the base on other sequences first.
    let mut m = model(5);
    let pretrain: Vec<Vec<u32>> = (0..4).map(|k| ids(12, k + 20)).collect();
    let mut full = stepper(varmap_vars(&m.varmap).unwrap(), 1e-2, 60);
    for _ in 0..60 {
        full.accumulate(&nll(&m, &pretrain, Adapters::On).backward().unwrap())
            .unwrap();
        full.step().unwrap();
    }
    let base_bits = bits(&m);
    let base_logits = logits(&m, Adapters::On);
    let set = LoraSet::attach(lora_cfg(), &mut m.decoder, DType::F32).unwrap();
    assert_eq!(
        set.iter().count(),
        2 * 7,
        "all-linear: 7 projections per layer, not lm_head"
    );
    assert_eq!(
        logits(&m, Adapters::On),
        base_logits,
        "B = 0: a fresh adapter changes nothing"
    );
    let seqs: Vec<Vec<u32>> = (0..3).map(|k| ids(10, k + 1)).collect();
    let mut st = stepper(set.named_vars(), 5e-2, 40);
    let first = nll(&m, &seqs, Adapters::On).to_scalar::<f32>().unwrap();
    for _ in 0..40 {
        st.accumulate(&nll(&m, &seqs, Adapters::On).backward().unwrap())
            .unwrap();
        st.step().unwrap();
    }
    let last = nll(&m, &seqs, Adapters::On).to_scalar::<f32>().unwrap();
    assert!(last < 0.5 * first, "LoRA did not learn: {first} → {last}");
    assert!(bits(&m) == base_bits, "a base weight changed");
    assert_eq!(
        logits(&m, Adapters::Off),
        base_logits,
        "adapters off = the untouched base model"
    );
    // Merging the adapters into the base weights reproduces the adapted model.
    let adapted = logits(&m, Adapters::On);
    set.merge_into_varmap(&m.varmap).unwrap();
    let merged = logits(&m, Adapters::Off);
    let worst = adapted
        .iter()
        .zip(&merged)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "merged model differs by {worst}");
}

/// Train `steps` optimizer steps of 2 micro-batches each, from `state`'s data position.
fn train_steps(m: &Model, st: &mut Stepper, state: &mut TrainerState, steps: u64) {
    let data: Vec<Vec<u32>> = (0..6).map(|k| ids(8 + k % 3, k + 2)).collect();
    for _ in 0..steps {
        for _micro in 0..2 {
            let order = epoch_order(data.len(), state.seed, state.epoch);
            let i = order[state.data_position as usize];
            st.accumulate(
                &nll(m, std::slice::from_ref(&data[i]), Adapters::On)
                    .backward()
                    .unwrap(),
            )
            .unwrap();
            state.data_position += 1;
            if state.data_position as usize == data.len() {
                (state.epoch, state.data_position) = (state.epoch + 1, 0);
            }
        }
        state.global_step = st.step().unwrap().step;
    }
}

/// Full fine-tuning or LoRA: the trainable tensors under their names.
fn setup(lora: bool) -> (Model, Vec<(String, Var)>) {
    let mut m = model(6);
    let vars = if lora {
        LoraSet::attach(lora_cfg(), &mut m.decoder, DType::F32)
            .unwrap()
            .named_vars()
    } else {
        varmap_vars(&m.varmap).unwrap()
    };
    (m, vars)
}

fn var_bits(vars: &[(String, Var)]) -> Vec<Vec<u32>> {
    vars.iter()
        .map(|(_, v)| {
            v.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        })
        .collect()
}

#[test]
fn save_and_resume_on_a_model_is_bit_identical() {
    for lora in [false, true] {
        let rng = ChaCha8Rng::seed_from_u64(1);
        let fresh_state = TrainerState::start(11, &rng, AdamWParams::default());
        // Straight: 4 steps (2 epochs of 6 examples need 6 steps; this crosses one epoch).
        let (m, vars) = setup(lora);
        let mut st = stepper(vars.clone(), 5e-3, 8);
        let mut state = fresh_state.clone();
        train_steps(&m, &mut st, &mut state, 4);
        let want = var_bits(&vars);
        // 2 steps, checkpoint, new process state, resume, 2 steps.
        let dir = tempfile::tempdir().unwrap();
        let (m1, vars1) = setup(lora);
        let mut st1 = stepper(vars1.clone(), 5e-3, 8);
        let mut state1 = fresh_state.clone();
        train_steps(&m1, &mut st1, &mut state1, 2);
        state1.optimizer = *st1.optimizer().params();
        save_checkpoint(dir.path(), &state1, st1.optimizer(), &vars1).unwrap();
        drop((m1, st1));
        let (m2, vars2) = setup(lora);
        let mut st2 = stepper(vars2.clone(), 5e-3, 8);
        let mut state2 = load_checkpoint(dir.path(), st2.optimizer_mut(), &vars2).unwrap();
        train_steps(&m2, &mut st2, &mut state2, 2);
        assert!(
            var_bits(&vars2) == want,
            "lora={lora}: resumed training differs from the straight run"
        );
        assert_eq!(
            (state2.global_step, state2.epoch, state2.data_position),
            (state.global_step, state.epoch, state.data_position)
        );
        let (_, untouched) = setup(lora);
        assert!(
            var_bits(&untouched) != want,
            "lora={lora}: training changed nothing"
        );
    }
}

/// Adapters saved in peft layout next to the saved base load back onto a freshly loaded
/// base and give the same logits, bit for bit.
#[test]
fn lora_adapter_files_reload_onto_the_saved_base() {
    let mut m = model(7);
    let set = LoraSet::attach(lora_cfg(), &mut m.decoder, DType::F32).unwrap();
    for (_, v) in set.named_vars() {
        let noise: Vec<f32> = (0..v.elem_count())
            .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.3)
            .collect();
        v.set(&Tensor::from_vec(noise, v.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    let want = logits(&m, Adapters::On);
    let dir = tempfile::tempdir().unwrap();
    let (base, adapter) = (dir.path().join("base"), dir.path().join("adapter"));
    m.save(&base).unwrap();
    set.save_peft(&adapter, &base.display().to_string())
        .unwrap();
    let mut back = Model::load(&base, scir::model::Weights::Frozen, &Device::Cpu).unwrap();
    let loaded = LoraSet::load_peft(&adapter, &Device::Cpu).unwrap();
    loaded.attach_to(&mut back.decoder).unwrap();
    assert_eq!(logits(&back, Adapters::On), want);
    assert_ne!(logits(&back, Adapters::Off), want);
    // An adapter for a layer the model lacks is a clear error.
    let mut other_cfg = config();
    other_cfg.num_layers = 1;
    let mut small = Model::from_config(
        other_cfg,
        synthetic_tokenizer(VOCAB).unwrap(),
        json!({}),
        1,
        &Device::Cpu,
    )
    .unwrap();
    let err = loaded.attach_to(&mut small.decoder).unwrap_err();
    assert!(err.to_string().contains("model.layers.1."), "{err}");
}

/// Writes a base model, a peft adapter and scir's logits for `scripts/check_lora_peft.py`,
/// which loads them with transformers + peft and compares (run by hand, needs Python):
/// `SCIR_LORA_EXPORT_DIR=/tmp/x cargo test --test tests lora_export -- --ignored`.
#[test]
#[ignore = "writes files for scripts/check_lora_peft.py; needs SCIR_LORA_EXPORT_DIR"]
fn lora_export_for_peft_check() {
    let out = std::path::PathBuf::from(
        std::env::var("SCIR_LORA_EXPORT_DIR").expect("set SCIR_LORA_EXPORT_DIR"),
    );
    let mut m = model(7);
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
        use_rslora: false,
        seed: 9,
    };
    let set = LoraSet::attach(cfg, &mut m.decoder, DType::F32).unwrap();
    for (_, v) in set.named_vars() {
        let noise: Vec<f32> = (0..v.elem_count())
            .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.3)
            .collect();
        v.set(&Tensor::from_vec(noise, v.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    let ids: Vec<u32> = vec![3, 7, 11, 5, 9, 20, 4];
    let batch = Batch::padded(std::slice::from_ref(&ids), PAD, Padding::Right).unwrap();
    let run = |a| {
        m.decoder
            .forward(&batch, None, a)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (on, off) = (run(Adapters::On), run(Adapters::Off));
    m.save(&out.join("base")).unwrap();
    set.save_peft(
        &out.join("adapter"),
        &out.join("base").display().to_string(),
    )
    .unwrap();
    std::fs::write(
        out.join("expect.json"),
        json!({"ids": ids, "on": on, "off": off}).to_string(),
    )
    .unwrap();
}
