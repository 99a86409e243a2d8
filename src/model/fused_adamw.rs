//! One-pass AdamW update and gradient sum of squares for f32 parameters.
//!
//! [`super::optim::AdamW`]'s reference path is a chain of candle ops (about ten full passes
//! over every parameter, each allocating a new tensor); at 30 M parameters it took as long
//! as the forward and backward together. This file does the same arithmetic element by
//! element in one pass, in place, **bit for bit**: each candle op it replaces is one f32
//! operation, written in the same order with the same constants (candle's `t * s`, `t / s`,
//! `t + s` with a scalar `s` are `affine`: `x · f32(mul) + f32(add)`, with `add = 0` for the
//! first two and `mul = 1` for the last; `sqr` is `x · x`). Rust never fuses `a·b + c` into
//! an FMA, so every rounding matches. The unit test checks this against the op chain.
//!
//! [`sum_sq_f64`] is `g.to_dtype(f64).sqr().sum_all()` with candle's sequential f64 sum.

use std::cell::RefCell;

use candle_core::{CpuStorage, InplaceOp2, Layout, Result};

/// The per-step constants of the update, each rounded to f32 as candle's `affine` does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamWCoefs {
    /// `1 − lr·wd`.
    pub decay: f32,
    /// `1 − β1`.
    pub one_minus_beta1: f32,
    /// `β2`.
    pub beta2: f32,
    /// `1 − β2`.
    pub one_minus_beta2: f32,
    /// `1 / √(1 − β2ᵗ)`.
    pub inv_bias_correction2_sqrt: f32,
    /// `ε`.
    pub eps: f32,
    /// `lr / (1 − β1ᵗ)`.
    pub step_size: f32,
}

impl AdamWCoefs {
    /// From the f64 quantities of [`super::optim::AdamW::step`].
    pub fn new(
        lr: f64,
        weight_decay: f64,
        (beta1, beta2, eps): (f64, f64, f64),
        bias_correction2_sqrt: f64,
        step_size: f64,
    ) -> Self {
        AdamWCoefs {
            decay: (1.0 - lr * weight_decay) as f32,
            one_minus_beta1: (1.0 - beta1) as f32,
            beta2: beta2 as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            inv_bias_correction2_sqrt: (1.0 / bias_correction2_sqrt) as f32,
            eps: eps as f32,
            step_size: step_size as f32,
        }
    }

    /// One element: parameter `theta`, moments `m`, `v`, gradient `g`.
    #[inline(always)]
    fn update(&self, theta: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        // θ·(1 − lr·wd)                           (affine mul, add 0)
        let decayed = *theta * self.decay + 0.0;
        // m + (g − m)·(1 − β1)                     (sub, affine, add)
        let m_new = *m + ((g - *m) * self.one_minus_beta1 + 0.0);
        // v·β2 + g²·(1 − β2)                       (affine, sqr, affine, add)
        let v_new = (*v * self.beta2 + 0.0) + ((g * g) * self.one_minus_beta2 + 0.0);
        // √v / √(1 − β2ᵗ) + ε                      (sqrt, affine, affine mul 1)
        #[allow(clippy::identity_op)]
        let denom = ((v_new.sqrt() * self.inv_bias_correction2_sqrt + 0.0) * 1.0) + self.eps;
        // θ − (m / denom)·step_size                (div, affine, sub)
        *theta = decayed - ((m_new / denom) * self.step_size + 0.0);
        *m = m_new;
        *v = v_new;
    }
}

/// The in-place op on a parameter's storage; the gradient is the second operand.
pub(crate) struct FusedAdamW<'a> {
    pub coefs: AdamWCoefs,
    /// `(exp_avg, exp_avg_sq)`, each as long as the parameter.
    pub moments: RefCell<(&'a mut [f32], &'a mut [f32])>,
}

impl InplaceOp2 for FusedAdamW<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (CpuStorage::F32(theta), CpuStorage::F32(grad)) = (s1, s2) else {
            candle_core::bail!("fused-adamw: parameter and gradient must be f32");
        };
        let (Some((t0, t1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("fused-adamw: parameter and gradient must be contiguous");
        };
        let (theta, grad) = (&mut theta[t0..t1], &grad[g0..g1]);
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        if theta.len() != grad.len() || m.len() != theta.len() || v.len() != theta.len() {
            candle_core::bail!("fused-adamw: parameter, gradient and moments differ in length");
        }
        for (((th, mi), vi), &g) in theta
            .iter_mut()
            .zip(m.iter_mut())
            .zip(v.iter_mut())
            .zip(grad)
        {
            self.coefs.update(th, mi, vi, g);
        }
        Ok(())
    }
}

/// `Σ (x as f64)²` in order: `to_dtype(f64).sqr().sum_all()` of a contiguous f32 tensor.
pub(crate) fn sum_sq_f64(xs: &[f32]) -> f64 {
    let mut sum = 0f64;
    for &x in xs {
        let y = f64::from(x);
        sum += y * y;
    }
    sum
}

#[cfg(test)]
mod tests {
    use candle_core::backprop::GradStore;
    use candle_core::{DType, Device, Tensor, Var};

    use super::sum_sq_f64;
    use crate::model::optim::{AdamW, AdamWParams};

    /// Values that exercise signs, zeros, tiny and large magnitudes.
    fn values(n: usize, salt: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                let k = i
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(salt.wrapping_mul(97));
                match k % 7 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => 1e-30 * (k % 13) as f32,
                    3 => -3.5e3 / (1 + k % 11) as f32,
                    _ => ((k % 2001) as f32 - 1000.0) * 1e-3,
                }
            })
            .collect()
    }

    /// The op chain of `AdamW::step` for one tensor (the reference arithmetic).
    fn reference_step(
        theta: &Tensor,
        (m, v): (&Tensor, &Tensor),
        g: &Tensor,
        p: &AdamWParams,
        t: i32,
    ) -> (Tensor, Tensor, Tensor) {
        let bc1 = 1.0 - p.beta1.powi(t);
        let bc2_sqrt = (1.0 - p.beta2.powi(t)).sqrt();
        let step_size = p.lr / bc1;
        let th = (theta * (1.0 - p.lr * p.weight_decay)).unwrap();
        let m = (m + ((g - m).unwrap() * (1.0 - p.beta1)).unwrap()).unwrap();
        let v = ((v * p.beta2).unwrap() + (g.sqr().unwrap() * (1.0 - p.beta2)).unwrap()).unwrap();
        let denom = ((v.sqrt().unwrap() / bc2_sqrt).unwrap() + p.eps).unwrap();
        let th = (th - ((&m / denom).unwrap() * step_size).unwrap()).unwrap();
        (th, m, v)
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    }

    #[test]
    fn fused_update_is_bit_identical_to_the_op_chain() {
        let dev = Device::Cpu;
        let n = 1000;
        let p = AdamWParams {
            lr: 3e-3,
            weight_decay: 0.1,
            ..AdamWParams::default()
        };
        let init = Tensor::from_vec(values(n, 1), (10, 100), &dev).unwrap();
        let var = Var::from_tensor(&init).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], p).unwrap();
        let (mut th, mut m, mut v) = (
            init.clone(),
            init.zeros_like().unwrap(),
            init.zeros_like().unwrap(),
        );
        for step in 1..=4 {
            let g = Tensor::from_vec(values(n, 10 + step as u32), (10, 100), &dev).unwrap();
            let mut grads = GradStore::default();
            grads.insert(var.as_tensor(), g.clone());
            opt.step(&grads).unwrap();
            (th, m, v) = reference_step(&th, (&m, &v), &g, &p, step);
            assert_eq!(bits(var.as_tensor()), bits(&th), "step {step}");
        }
    }

    #[test]
    fn sum_of_squares_matches_candle() {
        let xs = values(5000, 3);
        let t = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap();
        let want = t
            .to_dtype(DType::F64)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert_eq!(sum_sq_f64(&xs).to_bits(), want.to_bits());
    }
}
