//! The decoder: shapes, batched = one by one, cache = no cache, gradients everywhere.

use candle_core::{D, IndexOp, Tensor};
use scir::model::score::{Pair, response_logprobs, response_logprobs_vec, verdict_probs_vec};
use scir::model::{Adapters, Batch, Padding};

use super::common::{enc, family, max_rel, reference_logprobs, tiny};

#[test]
fn logits_cover_every_position() {
    let m = tiny(1);
    let batch = Batch::padded(
        &[enc(&m.text, "hello"), enc(&m.text, "hi")],
        0,
        Padding::Right,
    )
    .unwrap();
    let logits = m.decoder.forward(&batch, None, Adapters::On).unwrap();
    assert_eq!(logits.dims(), &[2, 6, m.config().vocab_size]);
}

fn pairs(m: &scir::model::Model) -> Vec<Pair> {
    let t = &m.text;
    [
        ("Q: 2+2?", "4"),
        ("Tell me a story.", "once upon a time"),
        ("x", "yz yz yz yz"),
    ]
    .iter()
    .map(|(p, r)| Pair {
        prompt: enc(t, p),
        response: t.encode_response(r, true).unwrap(),
    })
    .collect()
}

#[test]
fn batched_scores_equal_one_by_one() {
    for m in family(3) {
        let items = pairs(&m);
        let together = response_logprobs_vec(&m.decoder, &items, 0, Adapters::On, 8).unwrap();
        let alone = response_logprobs_vec(&m.decoder, &items, 0, Adapters::On, 1).unwrap();
        assert!(
            max_rel(&together, &alone) < 1e-5,
            "{together:?} vs {alone:?}"
        );
        assert!(together.iter().all(|x| x.is_finite() && *x < 0.0));
        let judge: Vec<Vec<u32>> = items.iter().map(|p| p.prompt.clone()).collect();
        let v8 = verdict_probs_vec(&m.decoder, &judge, (3, 4), 0, Adapters::On, 8).unwrap();
        let v1 = verdict_probs_vec(&m.decoder, &judge, (3, 4), 0, Adapters::On, 1).unwrap();
        for (a, b) in v8.iter().zip(&v1) {
            assert!((a[0] - b[0]).abs() < 1e-5 && (a[0] + a[1] - 1.0).abs() < 1e-5);
        }
    }
}

/// The log-prob sum equals the log-softmax of a single unpadded forward, computed by hand.
#[test]
fn logprob_is_sum_over_response_tokens() {
    let m = tiny(2);
    let prompt = enc(&m.text, "ab");
    let response = m.text.encode_response("cd", true).unwrap();
    let seq = [prompt.clone(), response.clone()].concat();
    let logits = m
        .decoder
        .forward(
            &Batch::padded(std::slice::from_ref(&seq), 0, Padding::Right).unwrap(),
            None,
            Adapters::On,
        )
        .unwrap();
    let logp = candle_nn::ops::log_softmax(&logits.i(0).unwrap(), D::Minus1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let want: f32 = (prompt.len()..seq.len())
        .map(|i| logp[i - 1][seq[i] as usize])
        .sum();
    let got = response_logprobs_vec(&m.decoder, &[Pair { prompt, response }], 0, Adapters::On, 1)
        .unwrap()[0];
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

/// Step-by-step logits through the KV cache equal the full-sequence logits.
#[test]
fn kv_cache_matches_full_forward() {
    for m in family(4) {
        let seqs = vec![enc(&m.text, "hello world"), enc(&m.text, "hey")];
        let full = m
            .decoder
            .forward(
                &Batch::padded(&seqs, 0, Padding::Left).unwrap(),
                None,
                Adapters::On,
            )
            .unwrap();
        let mut cache = m.decoder.new_cache(2);
        let left = Batch::padded(
            &[seqs[0][..5].to_vec(), seqs[1][..1].to_vec()],
            0,
            Padding::Left,
        )
        .unwrap();
        // Continue each row with its remaining tokens one step at a time, where both have some.
        m.decoder
            .forward(&left, Some(&mut cache), Adapters::On)
            .unwrap();
        let step = Batch::step(&[seqs[0][5], seqs[1][1]]);
        let got = m
            .decoder
            .forward(&step, Some(&mut cache), Adapters::On)
            .unwrap();
        let alone0 = m
            .decoder
            .forward(
                &Batch::padded(&[seqs[0][..6].to_vec()], 0, Padding::Left).unwrap(),
                None,
                Adapters::On,
            )
            .unwrap();
        let alone1 = m
            .decoder
            .forward(
                &Batch::padded(&[seqs[1][..2].to_vec()], 0, Padding::Left).unwrap(),
                None,
                Adapters::On,
            )
            .unwrap();
        let a = got.i((0, 0)).unwrap().to_vec1::<f32>().unwrap();
        let b = got.i((1, 0)).unwrap().to_vec1::<f32>().unwrap();
        let (a0, b0) = (
            alone0.i((0, 5)).unwrap().to_vec1::<f32>().unwrap(),
            alone1.i((0, 1)).unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(max_rel(&a, &a0) < 1e-5, "{}", max_rel(&a, &a0));
        assert!(max_rel(&b, &b0) < 1e-5, "{}", max_rel(&b, &b0));
        assert_eq!(full.dims()[1], seqs[0].len());
    }
}

/// One backward pass reaches every weight with a finite, non-zero gradient.
#[test]
fn every_weight_gets_a_gradient() {
    for m in family(5) {
        let items = pairs(&m);
        let loss = response_logprobs(&m.decoder, &items, 0, Adapters::On)
            .unwrap()
            .sum_all()
            .unwrap()
            .neg()
            .unwrap();
        let grads = loss.backward().unwrap();
        for (name, t) in m.tensors() {
            let g = grads
                .get(t)
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            let v = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(
                v.iter().all(|x| x.is_finite()),
                "{name}: non-finite gradient"
            );
            assert!(v.iter().any(|x| *x != 0.0), "{name}: zero gradient");
        }
    }
}

/// Noise floor of an f32 central difference on a loss of magnitude ~50 (ulp ~4e-6) with
/// steps of 5e-3..1e-2, after Richardson extrapolation.
const F32_FD_NOISE: f32 = 2e-3;

/// Analytic gradients agree with central finite differences (f32, so a loose tolerance).
#[test]
fn gradients_match_finite_differences() {
    let m = &family(6)[1];
    let items = pairs(m);
    let loss_of = || -> f32 {
        response_logprobs(&m.decoder, &items, 0, Adapters::On)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let grads = response_logprobs(&m.decoder, &items, 0, Adapters::On)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let vars = m.varmap.data().lock().unwrap().clone();
    for name in [
        "model.layers.0.input_layernorm.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.v_proj.bias",
        "lm_head.weight",
        "model.embed_tokens.weight",
    ] {
        let var = &vars[name];
        let g = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // Directional derivative along the gradient: d/dε L(w + ε·g/|g|) = |g|.
        let norm = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        let orig = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let at = |eps: f32| {
            let v: Vec<f32> = orig
                .iter()
                .zip(&g)
                .map(|(w, d)| w + eps * d / norm)
                .collect();
            var.set(&Tensor::from_vec(v, var.shape(), var.device()).unwrap())
                .unwrap();
            loss_of()
        };
        let central = |eps: f32| (at(eps) - at(-eps)) / (2.0 * eps);
        // Richardson extrapolation cancels the ε² error term.
        let fd = (4.0 * central(5e-3) - central(1e-2)) / 3.0;
        var.set(&Tensor::from_vec(orig.clone(), var.shape(), var.device()).unwrap())
            .unwrap();
        assert!(
            (fd - norm).abs() <= 0.01 * norm + F32_FD_NOISE,
            "{name}: analytic |g| {norm} vs numeric {fd}"
        );
    }
}

/// An attached adapter changes the output only with `Adapters::On`; a zero `B` changes
/// nothing; adapters receive gradients.
#[test]
fn lora_hook_adds_delta_only_when_on() {
    use candle_core::{DType, Device, Var};
    use scir::model::lora::LoraAdapter;
    let mut m = tiny(15);
    let items = pairs(&m);
    // The candle path throughout: the fast path does not run adapters (it declines).
    let score = |m: &scir::model::Model, a| reference_logprobs(&m.decoder, &items, a);
    let base = score(&m, Adapters::On);
    let dev = Device::Cpu;
    let mut adapters = Vec::new();
    for (name, lin) in m.decoder.linears_mut() {
        let (inp, out) = lin.dims();
        let a =
            Var::from_tensor(&(Tensor::ones((2, inp), DType::F32, &dev).unwrap() * 0.05).unwrap())
                .unwrap();
        let b = Var::zeros((out, 2), DType::F32, &dev).unwrap();
        let ad = LoraAdapter { a, b, scale: 2.0 };
        lin.set_lora(Some(ad.clone()));
        adapters.push((name, ad));
    }
    assert_eq!(adapters.len(), 2 * 7);
    assert_eq!(
        score(&m, Adapters::On),
        base,
        "zero B must leave the model unchanged"
    );
    for (_, ad) in &adapters {
        ad.b.set(&(Tensor::ones(ad.b.shape(), DType::F32, &dev).unwrap() * 0.01).unwrap())
            .unwrap();
    }
    assert_eq!(score(&m, Adapters::Off), base);
    assert_ne!(score(&m, Adapters::On), base);
    let loss = response_logprobs(&m.decoder, &items, 0, Adapters::On)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for (name, ad) in &adapters {
        assert!(
            grads.get(ad.a.as_tensor()).is_some() && grads.get(ad.b.as_tensor()).is_some(),
            "{name}"
        );
    }
}

/// The decoder trains end to end: a tiny model from scratch overfits three sequences
/// (mean per-token NLL from ≈ ln(vocab) ≈ 4.3 to below 0.3) with candle's AdamW.
#[test]
fn tiny_model_overfits_a_few_sequences() {
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};
    let m = tiny(16);
    let items = pairs(&m);
    let n_tokens: usize = items.iter().map(|p| p.response.len()).sum();
    let params = ParamsAdamW {
        lr: 1e-2,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut opt = AdamW::new(m.varmap.all_vars(), params).unwrap();
    let nll = || {
        let lp = response_logprobs(&m.decoder, &items, 0, Adapters::On).unwrap();
        (lp.sum_all().unwrap().neg().unwrap() / n_tokens as f64).unwrap()
    };
    let start = nll().to_scalar::<f32>().unwrap();
    for _ in 0..150 {
        opt.backward_step(&nll()).unwrap();
    }
    let end = nll().to_scalar::<f32>().unwrap();
    assert!(start > 3.0 && end < 0.3, "mean NLL {start} -> {end}");
}
