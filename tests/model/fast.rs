//! The fast inference path (`scir::model::fast`) against the candle path it replaces: the
//! same numbers within a stated tolerance, the same greedy tokens, a row's result the same
//! bits alone or in a batch, and LoRA adapters (forward and gradients) the same as there.

use scir::model::fast;
use scir::model::generate::{GenerateParams, Generated, Sampler, generate_reference};
use scir::model::score::{Pair, verdict_probs};
use scir::model::{Adapters, Model};

use scir::model::trainer::varmap_vars;

use super::common::{
    assert_same_gradients, enc, family, grad_of, max_rel, reference_logprobs, seeded_lora_b,
};

/// Fast vs candle path: `|a − b| / (1 + |b|)` on summed log-probs and on probabilities.
const TOLERANCE: f32 = 2e-5;

// The fast path called directly (the public entry points fall back to candle's path when it
// declines, which would make these tests compare candle with itself).

fn fast_scores(m: &Model, items: &[Pair]) -> Vec<f32> {
    fast::response_logprobs(&m.decoder, items, Adapters::On)
        .expect("the fast path applies")
        .unwrap()
}

fn fast_generate(
    m: &Model,
    prompts: &[Vec<u32>],
    seeds: &[u64],
    p: &GenerateParams,
) -> Vec<Generated> {
    fast::generate(&m.decoder, prompts, seeds, p, Adapters::On)
        .expect("the fast path applies")
        .unwrap()
}

/// [`family`] with queries scaled up ×8: random initial weights give near-uniform attention,
/// under which a wrong attention scale or mask would change the numbers by less than the
/// tolerance; these models attend sharply.
fn sharp_family(seed: u64) -> Vec<Model> {
    let models = family(seed);
    for m in &models {
        for (name, var) in varmap_vars(&m.varmap).unwrap() {
            if name.ends_with("q_proj.weight") {
                var.set(&(var.as_tensor() * 8.0).unwrap()).unwrap();
            }
        }
    }
    models
}

fn items(m: &Model) -> Vec<Pair> {
    let long = "the quick brown fox jumps over the lazy dog. ".repeat(6);
    [
        ("Q: 2+2?", "4"),
        ("Tell me a story.", "once upon a time there was a fox"),
        ("x", "yz yz yz yz"),
        (long.as_str(), "and then it slept."),
        ("Which is better, A or B?", long.as_str()),
    ]
    .iter()
    .map(|(p, r)| Pair {
        prompt: enc(&m.text, p),
        response: m.text.encode_response(r, true).unwrap(),
    })
    .collect()
}

#[test]
fn scores_and_verdicts_match_the_candle_path() {
    for m in sharp_family(21) {
        let it = items(&m);
        let fast = fast_scores(&m, &it);
        let slow = reference_logprobs(&m.decoder, &it, Adapters::On);
        assert!(max_rel(&fast, &slow) < TOLERANCE, "{fast:?} vs {slow:?}");
        let prompts: Vec<Vec<u32>> = it.iter().map(|p| p.prompt.clone()).collect();
        let fast = fast::verdict_probs(&m.decoder, &prompts, (5, 9), Adapters::On)
            .expect("the fast path applies")
            .unwrap();
        let slow = verdict_probs(&m.decoder, &prompts, (5, 9), 0, Adapters::On)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (f, s) in fast.iter().zip(&slow) {
            assert!((f[0] - s[0]).abs() < TOLERANCE, "{f:?} vs {s:?}");
        }
    }
}

#[test]
fn a_row_gives_the_same_bits_alone_and_in_a_batch() {
    for m in family(22) {
        let it = items(&m);
        let together = fast_scores(&m, &it);
        for (i, item) in it.iter().enumerate() {
            let alone = fast_scores(&m, std::slice::from_ref(item));
            assert_eq!(alone[0].to_bits(), together[i].to_bits(), "item {i}");
        }
    }
}

fn params(sampler: Sampler, n: usize) -> GenerateParams {
    GenerateParams {
        max_new_tokens: n,
        sampler,
        stop_ids: vec![],
        pad_id: 0,
    }
}

#[test]
fn greedy_tokens_match_the_candle_path() {
    for m in sharp_family(23) {
        let prompts: Vec<Vec<u32>> = items(&m).into_iter().map(|p| p.prompt).collect();
        let seeds = vec![0; prompts.len()];
        let p = params(Sampler::Greedy, 20);
        let fast = fast_generate(&m, &prompts, &seeds, &p);
        let slow = generate_reference(&m.decoder, &prompts, &seeds, &p, Adapters::On).unwrap();
        assert_eq!(fast, slow);
    }
}

#[test]
fn sampled_rows_do_not_depend_on_the_batch() {
    let m = &family(24)[1];
    let prompts: Vec<Vec<u32>> = items(m).into_iter().map(|p| p.prompt).collect();
    let seeds: Vec<u64> = (0..prompts.len() as u64).collect();
    let p = params(
        Sampler::Sample {
            temperature: 1.0,
            top_p: 1.0,
        },
        24,
    );
    let together = fast_generate(m, &prompts, &seeds, &p);
    // More rows than one group holds, in another order: every row unchanged.
    let many: Vec<Vec<u32>> = (0..150)
        .map(|i| prompts[i % prompts.len()].clone())
        .collect();
    let many_seeds: Vec<u64> = (0..150).map(|i| (i % prompts.len()) as u64).collect();
    let big = fast_generate(m, &many, &many_seeds, &p);
    for (i, g) in big.iter().enumerate() {
        assert_eq!(*g, together[i % prompts.len()], "row {i}");
    }
}

/// Every weight's gradient from the fast backward equals candle's autograd through the
/// differentiable path, for a loss mixing response log-probs and last-position logits (the
/// two quantities training differentiates), on every family (GQA, biases, untied head).
#[test]
fn fast_backward_matches_candle_autograd() {
    use candle_core::{Device, Tensor};
    use scir::model::fast::train::Recorder;
    use scir::model::score::{response_logprobs, token_logits_at_last};
    for m in sharp_family(25) {
        let it = items(&m);
        let prompts: Vec<Vec<u32>> = it.iter().map(|p| p.prompt.clone()).collect();
        let tokens = [5u32, 9, 11];
        let dev = Device::Cpu;
        let c_lp = Tensor::new(&[0.3f32, -1.0, 0.7, 0.2, -0.4], &dev).unwrap();
        let c_last = Tensor::new(
            &[
                [1.0f32, -0.5, 0.25],
                [0.1, 0.2, 0.3],
                [-1.0, 0.0, 2.0],
                [0.5, 0.5, -0.5],
                [0.0, 1.5, -2.0],
            ],
            &dev,
        )
        .unwrap();
        let loss = |lp: &Tensor, last: &Tensor| {
            ((lp * &c_lp).unwrap().sum_all().unwrap()
                + (last * &c_last).unwrap().sum_all().unwrap())
            .unwrap()
        };
        let lp = response_logprobs(&m.decoder, &it, 0, Adapters::On).unwrap();
        let last = token_logits_at_last(&m.decoder, &prompts, &tokens, 0, Adapters::On).unwrap();
        let want = loss(&lp, &last).backward().unwrap();

        let mut rec = Recorder::new(&m.decoder).expect("the fast path applies");
        let lp = rec.response_logprobs(&it).unwrap();
        let last = rec.last_logits(&prompts, &tokens).unwrap();
        let got = rec
            .weight_grads(&loss(&lp, &last).backward().unwrap())
            .unwrap();
        assert_same_gradients(&varmap_vars(&m.varmap).unwrap(), &want, &got, 1e-3);
    }
}

/// A reward model (a score head) on the fast training path: its rewards and every weight's
/// gradient equal candle's autograd, and it has no token log-probs there either.
#[test]
fn fast_backward_matches_candle_autograd_on_a_reward_model() {
    use candle_core::{Device, Tensor};
    use scir::model::Weights;
    use scir::model::reward::rewards;
    use scir::model::trainer::StepOutputs;
    for base in family(27) {
        let m = base.with_score_head(3, Weights::Trainable).unwrap();
        let seqs: Vec<Vec<u32>> = items(&base)
            .into_iter()
            .map(|p| [p.prompt, p.response].concat())
            .collect();
        let c = Tensor::new(&[0.3f32, -1.0, 0.7, 0.2, -0.4], &Device::Cpu).unwrap();
        let loss = |r: &Tensor| (r * &c).unwrap().sum_all().unwrap();
        let want_r = rewards(&m.decoder, &seqs, 0, Adapters::On).unwrap();
        let want = loss(&want_r).backward().unwrap();

        let mut outputs = StepOutputs::new(&m.decoder, 0);
        assert!(
            matches!(outputs, StepOutputs::Fast(_)),
            "the fast path applies"
        );
        let got_r = outputs.rewards(&seqs).unwrap();
        let a = want_r.to_vec1::<f32>().unwrap();
        let b = got_r.to_vec1::<f32>().unwrap();
        assert!(max_rel(&b, &a) < TOLERANCE, "{a:?} vs {b:?}");
        let got = outputs.gradients(&loss(&got_r)).unwrap();
        assert_same_gradients(&varmap_vars(&m.varmap).unwrap(), &want, &got, 1e-3);
        let mut rec = fast::train::Recorder::new(&m.decoder).unwrap();
        assert!(rec.response_logprobs(&items(&base)).is_err());
        assert!(
            rec.last_logits(&seqs, &[1]).is_err(),
            "a score head has one output"
        );
    }
}

/// `m` frozen, with rank-2 LoRA adapters on every linear layer whose `B` is random (a fresh
/// `B` is zero, under which a wrong adapter forward would pass unseen).
fn with_adapters(m: &Model, seed: u64) -> (Model, scir::model::lora::LoraSet) {
    use candle_core::DType;
    use scir::model::lora::{ALL_LINEAR, LoraConfig, LoraSet};
    let mut frozen = m.frozen_copy().unwrap();
    let cfg = LoraConfig {
        rank: 2,
        alpha: 4.0,
        target_modules: vec![ALL_LINEAR.to_string()],
        use_rslora: false,
        seed,
    };
    let set = LoraSet::attach(cfg, &mut frozen.decoder, DType::F32).unwrap();
    seeded_lora_b(&set, seed, 0.5);
    (frozen, set)
}

/// With LoRA adapters taking part, the fast path gives candle's numbers (scores, verdicts,
/// greedy tokens); with adapters off, the base model's.
#[test]
fn lora_adapters_on_the_fast_path_match_the_candle_path() {
    for base in sharp_family(26) {
        let (m, _set) = with_adapters(&base, 3);
        let it = items(&m);
        for adapters in [Adapters::On, Adapters::Off] {
            let fast = fast::response_logprobs(&m.decoder, &it, adapters)
                .expect("the fast path applies")
                .unwrap();
            let reference = reference_logprobs(&m.decoder, &it, adapters);
            assert!(max_rel(&fast, &reference) < TOLERANCE, "{adapters:?}");
        }
        let on = reference_logprobs(&m.decoder, &it, Adapters::On);
        let off = reference_logprobs(&m.decoder, &it, Adapters::Off);
        assert!(max_rel(&on, &off) > 1e-3, "the adapters change the model");
        let prompts: Vec<Vec<u32>> = it.iter().map(|p| p.prompt.clone()).collect();
        let p = params(Sampler::Greedy, 12);
        let seeds = vec![0; prompts.len()];
        let want = generate_reference(&m.decoder, &prompts, &seeds, &p, Adapters::On).unwrap();
        assert_eq!(fast_generate(&m, &prompts, &seeds, &p), want);
    }
}

/// LoRA training on the fast path: every adapter's gradient equals candle's autograd, the
/// frozen base weights get none, and recomputing every pass (no activations kept) gives the
/// same bits as keeping them.
#[test]
fn lora_gradients_match_candle_autograd() {
    for base in sharp_family(29) {
        let it = items(&base);
        let prompts: Vec<Vec<u32>> = it.iter().map(|p| p.prompt.clone()).collect();
        check_lora_gradients(&base, &it, &prompts);
    }
}

/// The same with sequences that share their first tokens, which the fast path computes once
/// per pair: both responses of one prompt (one pair's responses also share their start), and
/// judge-like prompts that differ only at the end.
#[test]
fn lora_gradients_with_shared_prefixes_match_candle_autograd() {
    let long = "the quick brown fox jumps over the lazy dog. ".repeat(3);
    let story = "Tell me a story about a fox and a dog, please.";
    for base in sharp_family(31) {
        let pair = |p: &str, r: &str| Pair {
            prompt: enc(&base.text, p),
            response: base.text.encode_response(r, true).unwrap(),
        };
        let it = vec![
            pair(&long, "and then it slept."),
            pair(story, "once upon a time"),
            pair(&long, "and then it ran away."),
            pair(story, "there was a dog"),
            pair("x", "yz"),
        ];
        let prompts: Vec<Vec<u32>> = [
            format!("{long}[A] yes [B] no [["),
            format!("{story}?"),
            format!("{long}[A] no [B] yes [["),
            long.clone(),
        ]
        .iter()
        .map(|p| enc(&base.text, p))
        .collect();
        check_lora_gradients(&base, &it, &prompts);
    }
}

/// Adapters on `base`; response log-probs of `it` and two logits at the end of each of
/// `prompts`, through a fixed linear loss: the fast path's adapter gradients (kept and
/// recomputed passes) against candle's autograd.
fn check_lora_gradients(base: &Model, it: &[Pair], prompts: &[Vec<u32>]) {
    use candle_core::{Device, Tensor};
    use scir::model::fast::train::Recorder;
    use scir::model::score::{response_logprobs, token_logits_at_last};
    let (m, set) = with_adapters(base, 5);
    let tokens = [5u32, 9];
    let dev = Device::Cpu;
    let weights = |n: usize, seed: f32| -> Tensor {
        let v: Vec<f32> = (0..n).map(|i| ((i as f32 + seed) * 1.7).sin()).collect();
        Tensor::from_vec(v, n, &dev).unwrap()
    };
    let c_lp = weights(it.len(), 0.3);
    let c_last = weights(2 * prompts.len(), 0.9)
        .reshape((prompts.len(), 2))
        .unwrap();
    let loss = |lp: &Tensor, last: &Tensor| {
        ((lp * &c_lp).unwrap().sum_all().unwrap() + (last * &c_last).unwrap().sum_all().unwrap())
            .unwrap()
    };
    let lp = response_logprobs(&m.decoder, it, 0, Adapters::On).unwrap();
    let last = token_logits_at_last(&m.decoder, prompts, &tokens, 0, Adapters::On).unwrap();
    let want = loss(&lp, &last).backward().unwrap();
    let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let fast_grads = |budget: usize| {
        let mut rec = Recorder::new(&m.decoder)
            .expect("the fast path applies")
            .keeping_at_most(budget);
        let fast_lp = rec.response_logprobs(it).unwrap();
        let fast_last = rec.last_logits(prompts, &tokens).unwrap();
        assert!(max_rel(&values(&fast_lp), &values(&lp)) < 2e-5, "log-probs");
        assert!(
            max_rel(&values(&fast_last), &values(&last)) < 2e-5,
            "logits"
        );
        rec.weight_grads(&loss(&fast_lp, &fast_last).backward().unwrap())
            .unwrap()
    };
    let (kept, recomputed) = (fast_grads(usize::MAX), fast_grads(0));
    let vars = set.named_vars();
    assert_eq!(kept.get_ids().count(), vars.len(), "adapters only");
    for (name, var) in &vars {
        let b = grad_of(&kept, var, name);
        assert_eq!(
            b,
            grad_of(&recomputed, var, name),
            "{name}: recomputed passes differ"
        );
    }
    assert_same_gradients(&vars, &want, &kept, 1e-3);
}
