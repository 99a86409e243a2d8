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
    assert!(
        w.len() >= n * k,
        "weight has {} values, needs {n}×{k}",
        w.len()
    );
    assert!(
        x.len() >= (m - 1) * ldx + k && ldx >= k,
        "x too short for {m}×{k}"
    );
    assert!(
        y.len() >= (m - 1) * ldy + n && ldy >= n,
        "y too short for {m}×{n}"
    );
    if m == 1 {
        let mut x2 = Vec::with_capacity(2 * k);
        x2.extend_from_slice(&x[..k]);
        x2.extend_from_slice(&x[..k]);
        let mut y2 = vec![0f32; 2 * n];
        if into == Into::Add {
            y2[..n].copy_from_slice(&y[..n]);
            y2[n..].copy_from_slice(&y[..n]);
        }
        column_major(&x2, k, w, &mut y2, n, (2, n, k), into);
        y[..n].copy_from_slice(&y2[..n]);
        return;
    }
    if m >= ROW_MAJOR_FROM_ROWS {
        row_major(x, ldx, w, y, ldy, (m, n, k), into);
    } else {
        column_major(x, ldx, w, y, ldy, (m, n, k), into);
    }
}

/// From this many rows on, repacking the weight (gemm's choice for a row-major `y`) costs
/// less than the transposed product (measured on the 30 M scoring workload: at 256 rows the
/// column-major product is 19 % faster, at 1 024 rows 15 % slower).
const ROW_MAJOR_FROM_ROWS: usize = 512;

/// `y (=|+=) x·Wᵀ` with `y` row-major: gemm repacks `W`.
fn row_major(
    x: &[f32],
    ldx: usize,
    w: &[f32],
    y: &mut [f32],
    ldy: usize,
    (m, n, k): (usize, usize, usize),
    into: Into,
) {
    // SAFETY: bounds checked by `matmul_wt`; y does not alias x or W.
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

/// gemm's micro-kernel wants the matrix it calls `lhs` in column panels. Asked for `x·Wᵀ`
/// with a row-major `y` it transposes the problem to `W·xᵀ` and repacks the whole weight on
/// every call (≈ 20 % of scoring time at 256 rows, measured). Asking for a column-major `yᵀ`
/// keeps `W` as the right-hand side, read in place (`rhs_rs = 1`), and packs only `x`; the
/// product is then transposed into `y`.
fn column_major(
    x: &[f32],
    ldx: usize,
    w: &[f32],
    y: &mut [f32],
    ldy: usize,
    (m, n, k): (usize, usize, usize),
    into: Into,
) {
    thread_local! {
        static COLUMN_MAJOR: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    COLUMN_MAJOR.with_borrow_mut(|yt| {
        if yt.len() < m * n {
            yt.resize(m * n, 0.0);
        }
        // SAFETY: the bounds were checked by the caller (`matmul_wt`): x holds m rows of k at
        // stride ldx, W holds n rows of k; yt holds m·n values (column j at j·m); no aliasing.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                yt.as_mut_ptr(),
                m as isize,
                1,
                false,
                x.as_ptr(),
                1,
                ldx as isize,
                w.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        transpose_into(&yt[..m * n], y, ldy, (m, n), into);
    });
}

/// `y[i][j] (=|+=) yt[j·m + i]`, in tiles so both sides stay in cache.
fn transpose_into(yt: &[f32], y: &mut [f32], ldy: usize, (m, n): (usize, usize), into: Into) {
    const TILE: usize = 32;
    for i0 in (0..m).step_by(TILE) {
        for j0 in (0..n).step_by(TILE) {
            for i in i0..(i0 + TILE).min(m) {
                let row = &mut y[i * ldy..i * ldy + n];
                for j in j0..(j0 + TILE).min(n) {
                    let v = yt[j * m + i];
                    match into {
                        Into::Overwrite => row[j] = v,
                        Into::Add => row[j] += v,
                    }
                }
            }
        }
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

/// A matrix operand: a slice and its strides (`a[i][j]` at `i·rs + j·cs`).
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Operand<'a> {
    /// A row-major matrix with row stride `ld`.
    pub fn rows(data: &'a [f32], ld: usize) -> Self {
        Operand {
            data,
            rs: ld,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with row stride `ld`.
    pub fn transposed(data: &'a [f32], ld: usize) -> Self {
        Operand {
            data,
            rs: 1,
            cs: ld,
        }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || self.data.len() > (rows - 1) * self.rs + (cols - 1) * self.cs
    }
}

/// `y (=|+=) scale · a·b` for `a: (m, k)`, `b: (k, n)`, `y: (m, n)` row stride `ldy`: the
/// backward pass's products (weight gradients `dYᵀ·X`, input gradients `dY·W`).
pub fn product(
    a: Operand,
    b: Operand,
    y: &mut [f32],
    ldy: usize,
    (m, n, k): (usize, usize, usize),
    scale: f32,
    into: Into,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        a.fits(m, k) && b.fits(k, n),
        "operand too short for {m}×{k}·{k}×{n}"
    );
    assert!(y.len() >= (m - 1) * ldy + n, "y too short");
    if k == 0 {
        if into == Into::Overwrite {
            for row in y.chunks_mut(ldy).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: bounds checked above; y does not alias a or b (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            ldy as isize,
            into == Into::Add,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
