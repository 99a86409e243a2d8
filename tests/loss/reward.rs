//! The Bradley–Terry reward loss: a hand-computed case and TRL 1.16's own numbers
//! (`tests/fixtures/reward_loss.json`, from `RewardTrainer.compute_loss`).

use scir::loss::reward::{accuracy, bradley_terry};
use serde_json::Value;

use super::{host, t};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/reward_loss.json"
);

fn fixture() -> Value {
    serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn loss(chosen: &[f64], rejected: &[f64], margin: Option<&[f64]>, eta: Option<f64>) -> f64 {
    let margin = margin.map(t);
    host(
        &bradley_terry(&t(chosen), &t(rejected), margin.as_ref(), eta)
            .unwrap()
            .reshape(1)
            .unwrap(),
    )[0]
}

/// r_c = 2, r_l = 1, m = 0.5: −log σ(0.5) = ln(1 + e^−0.5) = 0.474077; with η = 0.01 add
/// 0.01·(2 + 1)² = 0.09.
#[test]
fn bradley_terry_by_hand() {
    let got = loss(&[2.0], &[1.0], Some(&[0.5]), None);
    assert!((got - 0.474_077).abs() < 1e-6, "{got}");
    let got = loss(&[2.0], &[1.0], Some(&[0.5]), Some(0.01));
    assert!((got - 0.564_077).abs() < 1e-6, "{got}");
}

#[test]
fn bradley_terry_matches_trl_case_by_case_and_per_batch() {
    let f = fixture();
    for case in f["cases"].as_array().unwrap() {
        let margin = case["margin"].as_f64().map(|m| vec![m]);
        let got = loss(
            &[case["chosen_reward"].as_f64().unwrap()],
            &[case["rejected_reward"].as_f64().unwrap()],
            margin.as_deref(),
            case["center_rewards_coefficient"].as_f64(),
        );
        let want = case["loss"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-12 * want.abs().max(1.0),
            "{case}: {got}"
        );
    }
    for batch in f["batches"].as_array().unwrap() {
        let (c, r) = (
            floats(&batch["chosen_rewards"]),
            floats(&batch["rejected_rewards"]),
        );
        let margins = batch.get("margins").filter(|m| !m.is_null()).map(floats);
        let got = loss(
            &c,
            &r,
            margins.as_deref(),
            batch["center_rewards_coefficient"].as_f64(),
        );
        let want = batch["loss"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-12 * want.abs().max(1.0),
            "{batch}: {got}"
        );
        let acc = batch["metrics"]["accuracy"].as_f64().unwrap();
        assert_eq!(accuracy(&c, &r), Some(acc));
    }
}
