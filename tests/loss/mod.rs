//! The losses of docs/algorithm.md: DPO against hand-computed and TRL numbers, the consistency
//! losses and the selection rule against hand-computed cases (ties at exactly ½, δ > 0),
//! gradients through both reward paths, and finite-difference checks.

mod dpo;
mod objective;
mod preferences;
mod reward;

use candle_core::{DType, Device, Tensor};
use scir::loss::LogBernoulli;

pub const TOL: f64 = 1e-12;

pub fn t(v: &[f64]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

pub fn host(x: &Tensor) -> Vec<f64> {
    x.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
}

pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

pub fn assert_all_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(close(*g, *w, tol), "index {i}: got {g}, want {w}");
    }
}

pub fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

pub fn bern(p: &[f64]) -> LogBernoulli {
    let z: Vec<f64> = p.iter().map(|&p| logit(p)).collect();
    LogBernoulli::from_logit(&t(&z)).unwrap()
}

pub fn kl(p: f64, q: f64) -> f64 {
    p * (p / q).ln() + (1.0 - p) * ((1.0 - p) / (1.0 - q)).ln()
}

pub fn h(p: f64) -> f64 {
    -p * p.ln() - (1.0 - p) * (1.0 - p).ln()
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
