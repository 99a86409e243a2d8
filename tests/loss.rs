//! The losses of DESIGN §2: DPO against hand-computed and TRL numbers, the consistency
//! losses and the selection rule against hand-computed cases (ties at exactly ½, δ > 0),
//! gradients through both reward paths, and finite-difference checks.

use candle_core::{DType, Device, Tensor, Var};
use scir::loss::consistency::{agreement_nll, consistency_loss, entropy, symmetric_kl};
use scir::loss::ops::{log_sigmoid, logaddexp};
use scir::loss::{
    ConsistencyGrad, ConsistencyKind, LogBernoulli, PairLogps, Preferred, ScirLossConfig,
    dpo_sigmoid, scir_loss, select_pair,
};

const TOL: f64 = 1e-12;

fn t(v: &[f64]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

fn host(x: &Tensor) -> Vec<f64> {
    x.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

fn assert_all_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(close(*g, *w, tol), "index {i}: got {g}, want {w}");
    }
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

fn bern(p: &[f64]) -> LogBernoulli {
    let z: Vec<f64> = p.iter().map(|&p| logit(p)).collect();
    LogBernoulli::from_logit(&t(&z)).unwrap()
}

// ---- reference formulas, written out on f64 ----

fn kl(p: f64, q: f64) -> f64 {
    p * (p / q).ln() + (1.0 - p) * ((1.0 - p) / (1.0 - q)).ln()
}

fn h(p: f64) -> f64 {
    -p * p.ln() - (1.0 - p) * (1.0 - p).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn dpo_sigmoid_matches_hand_computation() {
    // logits = (-1 - -1.5) - (-2 - -1.5) = 1; loss = -log σ(0.1) = ln(1 + e^-0.1).
    let out = dpo_sigmoid(
        &t(&[-1.0, -3.0]),
        &t(&[-2.0, -3.0]),
        &t(&[-1.5, -2.0]),
        &t(&[-1.5, -2.0]),
        0.1,
        0.0,
    )
    .unwrap();
    assert_all_close(
        &host(&out.losses),
        &[(1.0 + (-0.1f64).exp()).ln(), 2f64.ln()],
        TOL,
    );
    assert_all_close(&host(&out.chosen_rewards), &[0.05, -0.1], TOL);
    assert_all_close(&host(&out.rejected_rewards), &[-0.05, -0.1], TOL);
    // cDPO label smoothing: -(1-ε) log σ(βz) - ε log σ(-βz).
    let out = dpo_sigmoid(&t(&[-1.0]), &t(&[-2.0]), &t(&[-1.5]), &t(&[-1.5]), 0.1, 0.2).unwrap();
    let want = -0.8 * sigmoid(0.1).ln() - 0.2 * sigmoid(-0.1).ln();
    assert_all_close(&host(&out.losses), &[want], TOL);
}

#[test]
fn log_sigmoid_is_finite_and_exact_at_extremes() {
    let x = t(&[-1000.0, -30.0, 0.0, 30.0, 1000.0]);
    let got = host(&log_sigmoid(&x).unwrap());
    assert_all_close(
        &got,
        &[
            -1000.0,
            -30.0 - (-30f64).exp(),
            -(2f64.ln()),
            -(-30f64).exp(),
            0.0,
        ],
        1e-14,
    );
    // logaddexp is symmetric bit for bit.
    let (a, b) = (t(&[0.3, -7.0, 2.0]), t(&[-1.1, 5.0, 2.0]));
    assert_eq!(
        host(&logaddexp(&a, &b).unwrap()),
        host(&logaddexp(&b, &a).unwrap())
    );
}

#[test]
fn log_sigmoid_gradient_is_right_at_the_kink() {
    // candle's abs'(0) = relu'(0) = 1 would make naive formulas give 1 here, not ½.
    let x = Var::new(&[0.0f64, 2.0, -3.0], &Device::Cpu).unwrap();
    let grads = log_sigmoid(x.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = host(grads.get(x.as_tensor()).unwrap());
    assert_all_close(&g, &[0.5, sigmoid(-2.0), sigmoid(3.0)], TOL);
    let a = Var::new(&[1.5f64], &Device::Cpu).unwrap();
    let b = Var::new(&[1.5f64], &Device::Cpu).unwrap();
    let grads = logaddexp(a.as_tensor(), b.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_all_close(&host(grads.get(a.as_tensor()).unwrap()), &[0.5], TOL);
    assert_all_close(&host(grads.get(b.as_tensor()).unwrap()), &[0.5], TOL);
}

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

fn cfg() -> ScirLossConfig {
    ScirLossConfig {
        beta: 0.1,
        irm_beta: 0.5,
        lambda: 0.7,
        gamma: 0.2,
        delta: 0.05,
        kind: ConsistencyKind::SymmetricKl,
        grad: ConsistencyGrad::Both,
    }
}

/// Four pairs: pair 0 agrees on y1, pair 1 agrees on y2, pair 2 is an exact IRM tie,
/// pair 3 disagrees.
fn batch() -> (PairLogps, [f64; 4]) {
    let logps = PairLogps {
        policy_y1: t(&[-10.0, -20.0, -7.0, -9.0]),
        policy_y2: t(&[-12.0, -18.5, -8.0, -9.5]),
        dpo_ref_y1: t(&[-10.5, -19.0, -7.5, -9.2]),
        dpo_ref_y2: t(&[-11.0, -19.0, -8.2, -9.4]),
        irm_ref_y1: t(&[-11.0, -21.0, -6.0, -10.0]),
        irm_ref_y2: t(&[-12.0, -20.0, -7.0, -10.0]),
    };
    (logps, [0.8, 0.2, 0.9, 0.3])
}

#[test]
fn scir_total_matches_hand_computation() {
    let (logps, qs) = batch();
    let c = cfg();
    let out = scir_loss(&logps, &bern(&qs), &c).unwrap();
    // p by hand: β_irm·[(π1 − ρ1) − (π2 − ρ2)].
    let z = [
        0.5 * (1.0 - 0.0),
        0.5 * (1.0 - 1.5),
        0.5 * (-1.0 - -1.0),
        0.5 * (1.0 - 0.5),
    ];
    let ps: Vec<f64> = z.iter().map(|&z| sigmoid(z)).collect();
    assert_all_close(&out.p, &ps, 1e-14);
    assert_eq!(out.p[2], 0.5);
    assert_eq!(
        out.selection,
        vec![Some(Preferred::Y1), Some(Preferred::Y2), None, None]
    );
    // DPO: pair 0 chosen y1, pair 1 chosen y2.
    let dpo0 = -sigmoid(0.1 * ((-10.0 - -10.5) - (-12.0 - -11.0))).ln();
    let dpo1 = -sigmoid(0.1 * ((-18.5 - -19.0) - (-20.0 - -19.0))).ln();
    let con: Vec<f64> = ps
        .iter()
        .zip(&qs)
        .map(|(&p, &q)| 0.5 * (kl(p, q) + kl(q, p)) + c.gamma * (h(p) + h(q)))
        .collect();
    let con_mean = con.iter().sum::<f64>() / 4.0;
    let want = (dpo0 + dpo1) / 2.0 + c.lambda * con_mean;
    let m = out.metrics;
    assert!(close(m.loss, want, 1e-10), "{} vs {want}", m.loss);
    assert!(close(out.loss.to_scalar::<f64>().unwrap(), want, 1e-10));
    assert!(close(m.loss_dpo, (dpo0 + dpo1) / 2.0, 1e-12));
    assert!(close(m.loss_consistency, con_mean, 1e-10));
    assert_eq!((m.selected_frac, m.agreement), (0.5, 0.5));
    // TRL metrics over the two selected pairs (rewards use the DPO reference and β).
    let (rc, rr) = ([0.1 * 0.5, 0.1 * 0.5], [-0.1, -0.1]);
    assert!(close(
        m.dpo.rewards_chosen.unwrap(),
        (rc[0] + rc[1]) / 2.0,
        TOL
    ));
    assert!(close(
        m.dpo.rewards_rejected.unwrap(),
        (rr[0] + rr[1]) / 2.0,
        TOL
    ));
    assert_eq!(m.dpo.rewards_accuracies, Some(1.0));
    assert!(close(m.dpo.rewards_margins.unwrap(), 0.15, TOL));
    assert!(close(
        m.dpo.logps_chosen.unwrap(),
        (-10.0 + -18.5) / 2.0,
        TOL
    ));
    assert!(close(
        m.dpo.logps_rejected.unwrap(),
        (-12.0 + -20.0) / 2.0,
        TOL
    ));
    let names: Vec<&str> = m.named().iter().map(|(n, _)| *n).collect();
    for n in [
        "rewards/chosen",
        "rewards/accuracies",
        "loss/dpo",
        "consistency/selected_frac",
        "consistency/agreement",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
}

#[test]
fn empty_consistent_set_trains_only_consistency() {
    let (logps, _) = batch();
    let c = ScirLossConfig {
        delta: 0.45,
        ..cfg()
    };
    let qs = [0.8, 0.2, 0.9, 0.3];
    let out = scir_loss(&logps, &bern(&qs), &c).unwrap();
    assert!(out.selection.iter().all(Option::is_none));
    assert_eq!(out.metrics.loss_dpo, 0.0);
    assert_eq!(out.metrics.selected_frac, 0.0);
    assert_eq!(out.metrics.dpo.rewards_chosen, None);
    assert!(close(
        out.metrics.loss,
        c.lambda * out.metrics.loss_consistency,
        1e-14
    ));
}

#[test]
fn bad_config_is_rejected() {
    let (logps, qs) = batch();
    for bad in [
        ScirLossConfig {
            delta: 0.5,
            ..cfg()
        },
        ScirLossConfig {
            delta: f64::NAN,
            ..cfg()
        },
        ScirLossConfig { beta: 0.0, ..cfg() },
        ScirLossConfig {
            lambda: -1.0,
            ..cfg()
        },
    ] {
        assert!(scir_loss(&logps, &bern(&qs), &bad).is_err(), "{bad:?}");
    }
    assert!(
        scir_loss(&logps, &bern(&qs[..3]), &cfg()).is_err(),
        "length mismatch"
    );
}

/// Inputs of the GRM as variables: verdict gaps in both orders.
struct Leaves {
    py1: Var,
    py2: Var,
    ab: Var,
    ba: Var,
}

fn leaves(py1: &[f64], py2: &[f64], ab: &[f64], ba: &[f64]) -> Leaves {
    let v = |x: &[f64]| Var::new(x, &Device::Cpu).unwrap();
    Leaves {
        py1: v(py1),
        py2: v(py2),
        ab: v(ab),
        ba: v(ba),
    }
}

fn total(l: &Leaves, c: &ScirLossConfig) -> Tensor {
    let (logps, _) = batch();
    let logps = PairLogps {
        policy_y1: l.py1.as_tensor().clone(),
        policy_y2: l.py2.as_tensor().clone(),
        ..logps
    };
    let q = LogBernoulli::grm_pairwise(l.ab.as_tensor(), Some(l.ba.as_tensor())).unwrap();
    scir_loss(&logps, &q, c).unwrap().loss
}

fn grad_of(grads: &candle_core::backprop::GradStore, v: &Var) -> Vec<f64> {
    grads
        .get(v.as_tensor())
        .map(host)
        .unwrap_or_else(|| vec![0.0; v.elem_count()])
}

const PY1: [f64; 4] = [-10.0, -20.0, -7.0, -9.0];
const PY2: [f64; 4] = [-12.0, -18.5, -8.0, -9.5];
const AB: [f64; 4] = [1.2, -0.4, 0.8, -1.0];
const BA: [f64; 4] = [-0.9, 1.1, 0.3, 0.2];

#[test]
fn consistency_loss_trains_both_reward_paths() {
    let c = ScirLossConfig {
        lambda: 1.0,
        ..cfg()
    };
    let l = leaves(&PY1, &PY2, &AB, &BA);
    let grads = total(&l, &c).backward().unwrap();
    for (name, v) in [
        ("policy y1", &l.py1),
        ("policy y2", &l.py2),
        ("judge A|y1,y2", &l.ab),
        ("judge A|y2,y1", &l.ba),
    ] {
        let g = grad_of(&grads, v);
        assert!(
            g.iter().all(|x| x.is_finite() && *x != 0.0),
            "{name}: {g:?}"
        );
    }
    // irm_only: the GRM path gets no gradient, the IRM path still does.
    let c = ScirLossConfig {
        grad: ConsistencyGrad::IrmOnly,
        ..c
    };
    let grads = total(&l, &c).backward().unwrap();
    assert!(grad_of(&grads, &l.ab).iter().all(|x| *x == 0.0));
    assert!(grad_of(&grads, &l.ba).iter().all(|x| *x == 0.0));
    assert!(grad_of(&grads, &l.py1).iter().all(|x| *x != 0.0));
}

/// Central differences of `f` at `x` against autograd, per coordinate.
fn check_fd(name: &str, x: &[f64], f: impl Fn(&[f64]) -> f64, analytic: &[f64]) {
    let step = 1e-6;
    for i in 0..x.len() {
        let (mut up, mut down) = (x.to_vec(), x.to_vec());
        up[i] += step;
        down[i] -= step;
        let fd = (f(&up) - f(&down)) / (2.0 * step);
        assert!(
            (fd - analytic[i]).abs() <= 1e-6 * (1.0 + fd.abs()),
            "{name}[{i}]: fd {fd} vs autograd {}",
            analytic[i]
        );
    }
}

#[test]
fn finite_differences_agree_with_autograd() {
    for kind in [ConsistencyKind::SymmetricKl, ConsistencyKind::AgreementNll] {
        let c = ScirLossConfig { kind, ..cfg() };
        let l = leaves(&PY1, &PY2, &AB, &BA);
        let grads = total(&l, &c).backward().unwrap();
        let eval = |py1: &[f64], py2: &[f64], ab: &[f64], ba: &[f64]| {
            total(&leaves(py1, py2, ab, ba), &c)
                .to_scalar::<f64>()
                .unwrap()
        };
        check_fd(
            "py1",
            &PY1,
            |x| eval(x, &PY2, &AB, &BA),
            &grad_of(&grads, &l.py1),
        );
        check_fd(
            "py2",
            &PY2,
            |x| eval(&PY1, x, &AB, &BA),
            &grad_of(&grads, &l.py2),
        );
        check_fd(
            "ab",
            &AB,
            |x| eval(&PY1, &PY2, x, &BA),
            &grad_of(&grads, &l.ab),
        );
        check_fd(
            "ba",
            &BA,
            |x| eval(&PY1, &PY2, &AB, x),
            &grad_of(&grads, &l.ba),
        );
    }
}

#[test]
fn f32_inputs_get_f32_gradients() {
    let py1 = Var::new(&[-3.0f32, -4.0], &Device::Cpu).unwrap();
    let f = |v: &[f64]| t(v).to_dtype(DType::F32).unwrap();
    let logps = PairLogps {
        policy_y1: py1.as_tensor().clone(),
        policy_y2: f(&[-3.5, -3.0]),
        dpo_ref_y1: f(&[-3.0, -4.0]),
        dpo_ref_y2: f(&[-3.0, -4.0]),
        irm_ref_y1: f(&[-3.0, -4.0]),
        irm_ref_y2: f(&[-3.0, -4.0]),
    };
    let q = LogBernoulli::from_logit(&f(&[1.0, -1.0])).unwrap();
    let out = scir_loss(&logps, &q, &cfg()).unwrap();
    let g = out.loss.backward().unwrap();
    let g = g.get(py1.as_tensor()).unwrap();
    assert_eq!(g.dtype(), DType::F32);
}

fn fixture() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dpo_loss.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn num(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} missing"))
}

fn nums(v: &serde_json::Value, k: &str) -> Vec<f64> {
    v[k].as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// TRL 1.16's `DPOTrainer._compute_loss` numbers (tests/fixtures/dpo_loss.json).
#[test]
fn dpo_matches_trl_per_pair() {
    let fx = fixture();
    assert_eq!(fx["schema_version"], 1);
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 24);
    for (i, c) in cases.iter().enumerate() {
        let one = |k: &str| t(&[num(c, k)]);
        let out = dpo_sigmoid(
            &one("policy_chosen_logps"),
            &one("policy_rejected_logps"),
            &one("reference_chosen_logps"),
            &one("reference_rejected_logps"),
            num(c, "beta"),
            num(c, "label_smoothing"),
        )
        .unwrap();
        // Absolute slack for losses near 0 (TRL: ≈2e-25 for a large margin at β = 1).
        let ok = |got: f64, want: f64| (got - want).abs() <= 1e-12 * want.abs().max(1e-12) + 1e-300;
        let loss = host(&out.losses)[0];
        assert!(
            ok(loss, num(c, "loss")),
            "case {i}: loss {loss} vs TRL {}",
            num(c, "loss")
        );
        assert!(
            close(host(&out.chosen_rewards)[0], num(c, "chosen_reward"), 1e-14),
            "case {i}"
        );
        assert!(
            close(
                host(&out.rejected_rewards)[0],
                num(c, "rejected_reward"),
                1e-14
            ),
            "case {i}"
        );
    }
}

#[test]
fn dpo_batch_loss_and_metrics_match_trl() {
    let fx = fixture();
    for b in fx["batches"].as_array().unwrap() {
        let (pc, pr) = (
            t(&nums(b, "policy_chosen_logps")),
            t(&nums(b, "policy_rejected_logps")),
        );
        let (rc, rr) = (
            t(&nums(b, "reference_chosen_logps")),
            t(&nums(b, "reference_rejected_logps")),
        );
        let out = dpo_sigmoid(&pc, &pr, &rc, &rr, num(b, "beta"), 0.0).unwrap();
        let loss = out.losses.mean_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(
            close(loss, num(b, "loss"), 1e-13),
            "beta {}: {loss} vs {}",
            num(b, "beta"),
            num(b, "loss")
        );
        let m = scir::loss::DpoMetrics::compute(&out, &pc, &pr).unwrap();
        let want = &b["metrics"];
        for (name, got) in m.named() {
            assert!(
                close(got.unwrap(), num(want, name), 1e-13),
                "{name}: {got:?} vs {}",
                want[name]
            );
        }
    }
}
