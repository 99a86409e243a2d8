//! Tests of the training plumbing (`scir::model::{optim, schedule, lora, train_state,
//! trainer}`): on toy problems (`optim`, `resume`, `lora`), then on small decoders
//! (`on_model`: gradients; `model_training`: overfitting, LoRA, resume).

mod lora;
mod model_training;
mod on_model;
mod optim;
mod resume;

use candle_core::{DType, Device, Tensor, Var};

pub(super) fn host2(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap()
}

pub(super) fn host1(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

pub(super) fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "[{i}] got {g}, want {w}"
        );
    }
}

/// Squared error of `w·x` against `y` for the rows `rows` of a fixed toy data set.
pub(super) fn toy_loss(w: &Var, rows: &[usize]) -> Tensor {
    let dev = Device::Cpu;
    let xs: Vec<f32> = rows
        .iter()
        .flat_map(|&r| [r as f32 * 0.1, 1.0 - r as f32 * 0.05, 0.5])
        .collect();
    let ys: Vec<f32> = rows.iter().map(|&r| (r as f32 * 0.3).sin()).collect();
    let x = Tensor::from_vec(xs, (rows.len(), 3), &dev).unwrap();
    let y = Tensor::from_vec(ys, rows.len(), &dev).unwrap();
    let pred = x
        .matmul(&w.as_tensor().t().unwrap())
        .unwrap()
        .squeeze(1)
        .unwrap();
    (pred - y).unwrap().sqr().unwrap().mean_all().unwrap()
}
