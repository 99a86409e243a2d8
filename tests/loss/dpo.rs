//! TRL's sigmoid DPO: hand-computed cases, TRL 1.16's own numbers, log-sigmoid numerics.

use candle_core::{Device, Var};
use scir::loss::ops::{log_sigmoid, logaddexp};
use scir::loss::{dpo_sigmoid, dpo_sigmoid_offset};

use super::{TOL, assert_all_close, close, host, sigmoid, t};

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
fn r_dpo_adds_alpha_times_the_length_gap_to_the_scaled_logits() {
    // β·logits = 0.1 as above; α = 0.05, |y_c| = 10, |y_r| = 4: z = 0.1 + 0.05·6 = 0.4,
    // loss = −log σ(0.4) = ln(1 + e^-0.4) = 0.513015 (R-DPO, Park et al. 2024, Eq. 9). A
    // longer rejected response (|y_c| = 4, |y_r| = 10) gives z = −0.2: a larger loss.
    let gaps = t(&[0.05 * 6.0, 0.05 * -6.0]);
    let (pc, pr, rc, rr) = (t(&[-1.0; 2]), t(&[-2.0; 2]), t(&[-1.5; 2]), t(&[-1.5; 2]));
    let out = dpo_sigmoid_offset([&pc, &pr, &rc, &rr], 0.1, 0.0, Some(&gaps)).unwrap();
    assert_all_close(
        &host(&out.losses),
        &[0.513_015_252_4, (1.0 + 0.2f64.exp()).ln()],
        TOL,
    );
    // The rewards stay DPO's.
    assert_all_close(&host(&out.chosen_rewards), &[0.05, 0.05], TOL);
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
