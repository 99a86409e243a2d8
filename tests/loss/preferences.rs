//! The IRM and GRM preferences, the consistency losses and the selection rule.

use candle_core::{Device, Tensor, Var};
use scir::loss::consistency::{agreement_nll, consistency_loss, entropy, symmetric_kl};
use scir::loss::{ConsistencyGrad, ConsistencyKind, LogBernoulli, Preferred, select_pair};

use super::{assert_all_close, bern, close, h, host, kl, logit, sigmoid, t};

#[test]
fn grm_swap_average_matches_hand_computation() {
    // P(A|y1,y2) = 0.9, P(A|y2,y1) = 0.3  =>  q = ½(0.9 + 1 - 0.3) = 0.8.
    // A pure position bias (both orders say A with the same logit) gives exactly ½.
    let ab = t(&[logit(0.9), 1.7, logit(0.6)]);
    let ba = t(&[logit(0.3), 1.7, logit(0.6)]);
    let q = LogBernoulli::grm_pairwise(&ab, Some(&ba)).unwrap();
    let probs = q.host_probs().unwrap();
    assert_all_close(&probs, &[0.8, 0.5, 0.5], 1e-13);
    assert_eq!(probs[1], 0.5, "a tie must be exactly one half");
    assert_all_close(&host(&q.log_not_p.exp().unwrap()), &[0.2, 0.5, 0.5], 1e-13);
    // Without swap, q = P(A|y1,y2); pointwise q = σ((s1 - s2)/τ).
    let q1 = LogBernoulli::grm_pairwise(&ab, None)
        .unwrap()
        .host_probs()
        .unwrap();
    assert!(close(q1[0], 0.9, 1e-13));
    // Expected score over score tokens valued 1..=3: softmax(0, ln 2, ln 3)·(1, 2, 3) = 14/6.
    let logits = Tensor::new(&[[0.0f64, 2f64.ln(), 3f64.ln()]], &Device::Cpu).unwrap();
    let s = LogBernoulli::expected_score(&logits, &[1.0, 2.0, 3.0]).unwrap();
    assert_all_close(&host(&s), &[14.0 / 6.0], 1e-14);
    let qp = LogBernoulli::grm_pointwise(&t(&[3.0]), &t(&[2.5]), 0.25)
        .unwrap()
        .host_probs()
        .unwrap();
    assert!(close(qp[0], sigmoid(2.0), 1e-14));
}

#[test]
fn irm_preference_matches_hand_computation() {
    // β[(−10 − −12) − (−11 − −11)] = 0.5·2 = 1.
    let p = LogBernoulli::irm(
        &t(&[-10.0, -4.0]),
        &t(&[-11.0, -4.0]),
        &t(&[-12.0, -6.0]),
        &t(&[-11.0, -6.0]),
        0.5,
    )
    .unwrap();
    let probs = p.host_probs().unwrap();
    assert!(close(probs[0], sigmoid(1.0), 1e-14));
    assert_eq!(probs[1], 0.5, "identical scores give exactly ½");
}

#[test]
fn consistency_losses_match_hand_computation() {
    let (ps, qs) = ([0.8, 0.1, 0.5, 0.999], [0.3, 0.15, 0.5, 0.002]);
    let (p, q) = (bern(&ps), bern(&qs));
    let gamma = 0.25;
    let want_kl: Vec<f64> = ps
        .iter()
        .zip(&qs)
        .map(|(&p, &q)| kl(p, q) + kl(q, p))
        .collect();
    assert_all_close(&host(&symmetric_kl(&p, &q).unwrap()), &want_kl, 1e-10);
    let want_h: Vec<f64> = ps.iter().map(|&p| h(p)).collect();
    assert_all_close(&host(&entropy(&p).unwrap()), &want_h, 1e-12);
    let con = consistency_loss(
        &p,
        &q,
        ConsistencyKind::SymmetricKl,
        ConsistencyGrad::Both,
        gamma,
    )
    .unwrap();
    let want: Vec<f64> = ps
        .iter()
        .zip(&qs)
        .map(|(&p, &q)| 0.5 * (kl(p, q) + kl(q, p)) + gamma * (h(p) + h(q)))
        .collect();
    assert_all_close(&host(&con), &want, 1e-10);
    let nll = agreement_nll(&p, &q).unwrap();
    let want: Vec<f64> = ps
        .iter()
        .zip(&qs)
        .map(|(&p, &q)| -(p * q + (1.0 - p) * (1.0 - q)).ln())
        .collect();
    assert_all_close(&host(&nll), &want, 1e-12);
}

#[test]
fn consistency_losses_are_finite_at_zero_and_one() {
    let zp = Var::new(&[800.0f64, -800.0, 800.0, 40.0], &Device::Cpu).unwrap();
    let zq = Var::new(&[-800.0f64, 800.0, 800.0, 40.0], &Device::Cpu).unwrap();
    let p = LogBernoulli::from_logit(zp.as_tensor()).unwrap();
    let q = LogBernoulli::from_logit(zq.as_tensor()).unwrap();
    for kind in [ConsistencyKind::SymmetricKl, ConsistencyKind::AgreementNll] {
        let l = consistency_loss(&p, &q, kind, ConsistencyGrad::Both, 0.1).unwrap();
        let v = host(&l);
        assert!(v.iter().all(|x| x.is_finite()), "{kind:?}: {v:?}");
        let grads = l.sum_all().unwrap().backward().unwrap();
        for var in [&zp, &zq] {
            let g = host(grads.get(var.as_tensor()).unwrap());
            assert!(g.iter().all(|x| x.is_finite()), "{kind:?}: gradient {g:?}");
        }
    }
    // p = 1, q = 0: symmetric KL = (1 − 0)·(800 + 800); ½ of it is 800.
    let sk = host(&symmetric_kl(&p, &q).unwrap());
    assert!(close(sk[0], 1600.0, 1e-12) && close(sk[2], 0.0, 1e-12));
    // agreement of p = σ(800), q = σ(−800) is 2·e^-800: its NLL is 800 − ln 2, not inf.
    let nll = host(&agreement_nll(&p, &q).unwrap());
    assert!(close(nll[0], 800.0 - 2f64.ln(), 1e-12), "{nll:?}");
}

#[test]
fn selection_rule_hand_cases() {
    let cases: &[(f64, f64, f64, Option<Preferred>)] = &[
        (0.7, 0.8, 0.0, Some(Preferred::Y1)),
        (0.3, 0.2, 0.0, Some(Preferred::Y2)),
        (0.7, 0.3, 0.0, None),                    // disagree
        (0.5, 0.9, 0.0, None),                    // tie on the IRM side
        (0.9, 0.5, 0.0, None),                    // tie on the GRM side
        (0.5, 0.5, 0.0, None),                    // both tied
        (0.5, 0.5, 0.1, None),                    //
        (0.7, 0.55, 0.1, None),                   // q too close to ½
        (0.55, 0.9, 0.1, None),                   // p too close to ½
        (0.75, 0.875, 0.25, Some(Preferred::Y1)), // exactly δ away counts (≥)
        (0.2, 0.1, 0.25, Some(Preferred::Y2)),
        (0.8, 0.3, 0.1, None), // far from ½ but disagreeing
        (1.0, 1.0, 0.49, Some(Preferred::Y1)),
    ];
    for &(p, q, d, want) in cases {
        assert_eq!(select_pair(p, q, d), want, "p={p} q={q} δ={d}");
    }
}
