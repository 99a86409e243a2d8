//! `y = x·Wᵀ` on row-major slices through the `gemm` crate (the kernels candle uses), on
//! the calling thread: the fast path parallelises over independent groups of sequences.
//!
//! Shapes: `x: (m, k)` with row stride `ldx`, `W: (n, k)` row-major (a checkpoint's
//! `(out, in)` layout, read in place), `y: (m, n)` with row stride `ldy`.
//!
//! Invariant: row `i` of `y` depends only on row `i` of `x` and on `W` — not on `m`. gemm
//! takes a matrix-vector path with another summation order when `m == 1`, so a single row is
//! computed as two (itself twice); a row's result is then the same alone or in a batch.

use gemm::Parallelism;

/// Whether the product overwrites `y` or is added to it (the residual stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Into {
    Overwrite,
    Add,
}

/// `y (=|+=) x·Wᵀ`; see the module docs for shapes.
#[allow(clippy::too_many_arguments)]
pub fn matmul_wt(
    x: &[f32],
    ldx: usize,
    w: &[f32],
    y: &mut [f32],
    ldy: usize,
    (m, n, k): (usize, usize, usize),
    into: Into,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(w.len() >= n * k, "weight has {} values, needs {n}×{k}", w.len());
    assert!(x.len() >= (m - 1) * ldx + k && ldx >= k, "x too short for {m}×{k}");
    assert!(y.len() >= (m - 1) * ldy + n && ldy >= n, "y too short for {m}×{n}");
    if m == 1 {
        let mut x2 = Vec::with_capacity(2 * k);
        x2.extend_from_slice(&x[..k]);
        x2.extend_from_slice(&x[..k]);
        let mut y2 = vec![0f32; 2 * n];
        if into == Into::Add {
            y2[..n].copy_from_slice(&y[..n]);
            y2[n..].copy_from_slice(&y[..n]);
        }
        raw(&x2, k, w, &mut y2, n, (2, n, k), into);
        y[..n].copy_from_slice(&y2[..n]);
        return;
    }
    raw(x, ldx, w, y, ldy, (m, n, k), into);
}

fn raw(
    x: &[f32],
    ldx: usize,
    w: &[f32],
    y: &mut [f32],
    ldy: usize,
    (m, n, k): (usize, usize, usize),
    into: Into,
) {
    // SAFETY: the bounds were checked by the caller (`matmul_wt`): x holds m rows of k at
    // stride ldx, W holds n rows of k, y holds m rows of n at stride ldy; y does not alias.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            ldy as isize,
            into == Into::Add,
            x.as_ptr(),
            1,
            ldx as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// `y = a·b` for `a: (m, k)` (row stride `lda`), `b: (k, n)` given by its strides
/// (`b[kk][j]` at `kk·b_rs + j·b_cs`), `y: (m, n)` row stride `ldy`, scaled by `scale`.
/// The attention products (`q·kᵀ` and `p·v`) over a KV cache.
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided(
    a: &[f32],
    lda: usize,
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    y: &mut [f32],
    ldy: usize,
    (m, n, k): (usize, usize, usize),
    scale: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.len() >= (m - 1) * lda + k, "a too short");
    assert!(b.len() > (k - 1) * b_rs + (n - 1) * b_cs, "b too short");
    assert!(y.len() >= (m - 1) * ldy + n, "y too short");
    // SAFETY: bounds checked above; y does not alias a or b.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            ldy as isize,
            false,
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            0.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
