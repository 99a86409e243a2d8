//! Element-wise kernels of the fast inference path, written so LLVM vectorises them, and
//! compiled three times (AVX-512, AVX2+FMA, the x86-64 baseline) with the widest the CPU
//! supports picked at run time.
//!
//! Every reduction keeps [`LANES`] independent partial sums that are combined in a fixed order
//! at the end, and no multiply-add is fused, so each kernel gives the same bits whichever of
//! the three versions runs: results depend on the input only, never on the CPU or the thread
//! count. `exp` is a Cephes-style polynomial (|relative error| < 2·10⁻⁷ over the f32 range,
//! flushing below `e^-87.3` to that value), not libm's `expf`.

/// Independent partial sums per reduction: one AVX-512 register of f32.
pub const LANES: usize = 16;

/// `#[inline(always)]` body → a public function dispatching to the widest instruction set.
macro_rules! multiversion {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:ident) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                if isa() == Isa::Avx512 {
                    // SAFETY: the CPU reported these features (`isa`).
                    return unsafe { avx512($($arg),*) };
                }
                if isa() == Isa::Avx2 {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
    Baseline,
}

fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("fma")
            {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    })
}

/// `e^x` for f32, branch-free (vectorises); see the module docs for its accuracy.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut y = 1.987_569_1e-4;
    y = y * r + 1.398_199_9e-3;
    y = y * r + 8.333_452e-3;
    y = y * r + 4.166_579_6e-2;
    y = y * r + 0.166_666_65;
    y = y * r + 0.5;
    y = y * (r * r) + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Sum of `f(x_i)` with [`LANES`] partial sums (fixed combination order).
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    for (l, &x) in chunks.remainder().iter().enumerate() {
        acc[l] += f(x);
    }
    combine(acc)
}

#[inline(always)]
fn combine(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    acc[0]
}

#[inline(always)]
fn max_impl(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    for (l, &x) in chunks.remainder().iter().enumerate() {
        acc[l] = if x > acc[l] { x } else { acc[l] };
    }
    acc.into_iter().fold(f32::NEG_INFINITY, f32::max)
}

#[inline(always)]
fn dot_impl(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l] += x * y;
    }
    combine(acc)
}

#[inline(always)]
fn axpy_impl(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[inline(always)]
fn rms_norm_impl(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let mean_sq = lane_sum(x, |v| v * v) / x.len() as f32;
    let inv = 1.0 / (mean_sq + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
        *o = w * (v * inv);
    }
}

#[inline(always)]
fn silu_mul_impl(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp_f32(-*g)) * u;
    }
}

#[inline(always)]
fn softmax_impl(xs: &mut [f32]) {
    let max = max_impl(xs);
    for x in xs.iter_mut() {
        *x = exp_f32(*x - max);
    }
    let inv = 1.0 / lane_sum(xs, |v| v);
    for x in xs.iter_mut() {
        *x *= inv;
    }
}

#[inline(always)]
fn log_sum_exp_impl(xs: &[f32]) -> f32 {
    let max = max_impl(xs);
    max + lane_sum(xs, |v| exp_f32(v - max)).ln()
}

#[inline(always)]
fn softmax_weights_impl(logits: &[f32], inv_t: f32, out: &mut [f32]) {
    let max = max_impl(logits);
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = exp_f32((l - max) * inv_t);
    }
}

#[inline(always)]
fn rms_norm_backward_impl(
    x: &[f32],
    w: &[f32],
    eps: f32,
    dy: &[f32],
    dx: &mut [f32],
    dw: &mut [f32],
) {
    let h = x.len() as f32;
    let inv = 1.0 / (lane_sum(x, |v| v * v) / h + eps).sqrt();
    // g = w·dy; dx = inv·(g − x̂·mean(g·x̂)), x̂ = x·inv; dw += dy·x̂.
    let mut acc = [0f32; LANES];
    for (i, ((&xv, &wv), &d)) in x.iter().zip(w).zip(dy).enumerate() {
        acc[i % LANES] += wv * d * (xv * inv);
    }
    let mean = combine(acc) / h;
    for ((((o, dwv), &xv), &wv), &d) in dx.iter_mut().zip(dw.iter_mut()).zip(x).zip(w).zip(dy) {
        let xhat = xv * inv;
        *o += inv * (wv * d - xhat * mean);
        *dwv += d * xhat;
    }
}

#[inline(always)]
fn silu_mul_backward_impl(
    gate: &[f32],
    up: &[f32],
    da: &[f32],
    dgate: &mut [f32],
    dup: &mut [f32],
) {
    for ((((&g, &u), &d), dg), du) in gate
        .iter()
        .zip(up)
        .zip(da)
        .zip(dgate.iter_mut())
        .zip(dup.iter_mut())
    {
        let sig = 1.0 / (1.0 + exp_f32(-g));
        let silu = g * sig;
        *du = d * silu;
        *dg = d * u * (sig * (1.0 + g * (1.0 - sig)));
    }
}

#[inline(always)]
fn silu_mul_into_impl(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + exp_f32(-g)) * u;
    }
}

#[inline(always)]
fn softmax_backward_impl(p: &[f32], dp: &mut [f32]) {
    let s = dot_impl(p, dp);
    for (d, &pv) in dp.iter_mut().zip(p) {
        *d = pv * (*d - s);
    }
}

multiversion!(
    /// RMSNorm's backward for one row: `dx += ∂L/∂x`, `dw += ∂L/∂w` given `dy = ∂L/∂y`.
    pub fn rms_norm_backward(x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32], dw: &mut [f32]) => rms_norm_backward_impl
);
multiversion!(
    /// SwiGLU's backward: `a = silu(gate)·up`; given `da`, write `dgate` and `dup`.
    pub fn silu_mul_backward(gate: &[f32], up: &[f32], da: &[f32], dgate: &mut [f32], dup: &mut [f32]) => silu_mul_backward_impl
);
multiversion!(
    /// `out = silu(gate)·up`.
    pub fn silu_mul_into(gate: &[f32], up: &[f32], out: &mut [f32]) => silu_mul_into_impl
);
multiversion!(
    /// Softmax's backward for one row of probabilities `p`: `dp ← p·(dp − Σ p·dp)`.
    pub fn softmax_backward(p: &[f32], dp: &mut [f32]) => softmax_backward_impl
);
multiversion!(
    /// `Σ a_i·b_i` over the shorter length.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 => dot_impl
);
multiversion!(
    /// `y += a·x`.
    pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) => axpy_impl
);
multiversion!(
    /// `out = w · x / sqrt(mean(x²) + eps)` (transformers' Llama RMSNorm, f32).
    pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) => rms_norm_impl
);
multiversion!(
    /// `gate = silu(gate) · up` (SwiGLU), in place.
    pub fn silu_mul(gate: &mut [f32], up: &[f32]) => silu_mul_impl
);
multiversion!(
    /// Softmax in place.
    pub fn softmax(xs: &mut [f32]) => softmax_impl
);
multiversion!(
    /// `log Σ e^{x_i}`.
    pub fn log_sum_exp(xs: &[f32]) -> f32 => log_sum_exp_impl
);
multiversion!(
    /// `out = exp((logits − max) · inv_t)`: unnormalised sampling weights.
    pub fn softmax_weights(logits: &[f32], inv_t: f32, out: &mut [f32]) => softmax_weights_impl
);

/// The same `exp` the kernels use, for tests.
pub fn exp(x: f32) -> f32 {
    exp_f32(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_f32_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = f64::from(x).exp();
            worst = worst.max(((f64::from(exp(x)) - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
    }

    #[test]
    fn kernels_match_plain_formulas() {
        let xs: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let plain_lse = xs.iter().map(|&v| f64::from(v).exp()).sum::<f64>().ln();
        assert!((f64::from(log_sum_exp(&xs)) - plain_lse).abs() < 1e-5);
        let mut sm = xs.clone();
        softmax(&mut sm);
        assert!((sm.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let d: f32 = xs.iter().map(|v| v * v).sum();
        assert!((dot(&xs, &xs) - d).abs() < 1e-4);
    }
}
