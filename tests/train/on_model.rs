//! Gradients on small decoders: the SCIR objective reaches every tensor and trains
//! through both reward paths; finite differences agree. Helpers shared with
//! `model_training`.

use candle_core::{DType, Device, Tensor};
use scir::bench::synthetic_tokenizer;
use scir::loss::{
    ConsistencyGrad, ConsistencyKind, LogBernoulli, PairLogps, ScirLossConfig, scir_loss,
};
use scir::model::config::{Arch, ModelConfig, Preset};
use scir::model::score::{Pair, response_logprobs};
use scir::model::trainer::{varmap_vars, verdict_logit_gaps};
use scir::model::{Adapters, Model};
use serde_json::json;

pub(super) const VOCAB: usize = 40;

pub(super) const PAD: u32 = 0;

/// Verdict tokens of the toy judge.
pub(super) const VERDICT: (u32, u32) = (1, 2);

/// A small Qwen2-style config (q/k/v biases, untied head, GQA).
pub(super) fn config() -> ModelConfig {
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

pub(super) fn model(seed: u64) -> Model {
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
pub(super) fn ids(n: usize, salt: usize) -> Vec<u32> {
    (0..n)
        .map(|i| (3 + (i * 17 + salt * 29 + i * i * salt) % (VOCAB - 3)) as u32)
        .collect()
}

/// A prompt with two responses: `(x, y1, y2)`.
pub(super) type Triple = (Vec<u32>, Vec<u32>, Vec<u32>);

/// Three prompts with two responses each.
pub(super) fn pairs() -> Vec<Triple> {
    (0..3)
        .map(|k| (ids(4 + k, k + 1), ids(3 + k, k + 7), ids(5 - k, k + 11)))
        .collect()
}

/// The toy judge prompt: `x · A-marker · a · B-marker · b`.
pub(super) fn judge_prompt(x: &[u32], a: &[u32], b: &[u32]) -> Vec<u32> {
    [x, &[VERDICT.0], a, &[VERDICT.1], b].concat()
}

pub(super) fn host(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// Log-probs of y1 and y2 under the model, `(n,)` each.
pub(super) fn policy_logps(m: &Model, adapters: Adapters) -> (Tensor, Tensor) {
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
pub(super) fn grm(m: &Model, adapters: Adapters) -> LogBernoulli {
    let ps = pairs();
    let ab: Vec<Vec<u32>> = ps.iter().map(|p| judge_prompt(&p.0, &p.1, &p.2)).collect();
    let ba: Vec<Vec<u32>> = ps.iter().map(|p| judge_prompt(&p.0, &p.2, &p.1)).collect();
    let gab = verdict_logit_gaps(&m.decoder, &ab, VERDICT, PAD, adapters).unwrap();
    let gba = verdict_logit_gaps(&m.decoder, &ba, VERDICT, PAD, adapters).unwrap();
    LogBernoulli::grm_pairwise(&gab, Some(&gba)).unwrap()
}

pub(super) fn loss_cfg() -> ScirLossConfig {
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
pub(super) fn refs() -> (Tensor, Tensor) {
    let (py1, py2) = policy_logps(&model(0), Adapters::On);
    let shift = Tensor::new(&[2.0f32, -2.0, 3.0], &Device::Cpu).unwrap();
    ((py1.detach() - &shift).unwrap(), py2.detach())
}

/// The SCIR objective on the toy pairs; `detach_irm` / `detach_grm` cut the policy
/// log-probs / the judge.
pub(super) fn objective(
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
        lengths: None,
    };
    scir_loss(&logps, &q, cfg).unwrap().loss
}

pub(super) fn nonzero_finite(g: Option<&Tensor>) -> bool {
    g.is_some_and(|g| {
        let v = host(g);
        v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0)
    })
}

#[test]
pub(super) fn scir_objective_reaches_every_trainable_tensor() {
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
pub(super) fn consistency_loss_trains_through_each_reward_path() {
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
pub(super) fn scir_objective_matches_finite_differences() {
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
