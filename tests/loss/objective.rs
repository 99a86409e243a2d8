//! The SCIR objective: hand-computed totals and metrics, the empty selection, bad
//! configs, gradients through both reward paths, finite differences.

use candle_core::{DType, Device, Tensor, Var};
use scir::loss::{
    ConsistencyGrad, ConsistencyKind, LogBernoulli, PairLogps, Preferred, ScirLossConfig, scir_loss,
};

use super::{TOL, assert_all_close, bern, close, h, host, kl, sigmoid, t};

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
        lengths: None,
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
    // kl/reference: mean of (dpo ref − policy) over all 8 responses.
    let kl = ((-10.5 - -10.0)
        + (-19.0 - -20.0)
        + (-7.5 - -7.0)
        + (-9.2 - -9.0)
        + (-11.0 - -12.0)
        + (-19.0 - -18.5)
        + (-8.2 - -8.0)
        + (-9.4 - -9.5))
        / 8.0;
    assert!(
        close(m.kl_reference, kl, 1e-14),
        "{} vs {kl}",
        m.kl_reference
    );
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
        "kl/reference",
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
        lengths: None,
    };
    let q = LogBernoulli::from_logit(&f(&[1.0, -1.0])).unwrap();
    let out = scir_loss(&logps, &q, &cfg()).unwrap();
    let g = out.loss.backward().unwrap();
    let g = g.get(py1.as_tensor()).unwrap();
    assert_eq!(g.dtype(), DType::F32);
}
