//! Matrix products on row-major slices through the `gemm` crate (the kernels candle uses),
//! on the calling thread: the fast path parallelises over independent groups of sequences.
//! When a call has fewer groups than threads (one long prompt, one row decoding), a group
//! lends its products the spare threads ([`with_threads`]); gemm then splits the output into
//! tiles across threads but never the sum over `k`, so the bits are the same (unit-tested).
//!
//! - [`matmul_wt`]: `y = x·Wᵀ` for a layer: `x: (m, k)` with row stride `ldx`, `W: (n, k)`
//!   row-major (a checkpoint's `(out, in)` layout, read in place), `y: (m, n)`, stride `ldy`.
//! - [`product`]: `y = s·a·b` for any strided operands ([`Operand`]): attention and the
//!   backward pass.
//!
//! Invariant of [`matmul_wt`]: row `i` of `y` depends only on row `i` of `x` and on `W` — not
//! on `m`. gemm sums in another order on three small-shape paths: matrix-vector when `m == 1`,
//! its "horizontal" kernel when `m·n ≤ 256`, and a fixed depth block of 512 when `m, n ≤ 64`
//! and `k > 512`. Products that small are computed with zero rows appended (see
//! [`min_rows`]), so a row's result is the same alone or in a batch (unit-tested below).

use std::cell::Cell;

use gemm::Parallelism;

thread_local! {
    /// Threads gemm may use for products on this thread (see [`with_threads`]).
    static THREADS: Cell<usize> = const { Cell::new(1) };
}

/// Runs `f` with up to `threads` rayon threads for each product it computes on this thread
/// (1: on this thread only). Results do not depend on `threads`.
pub fn with_threads<T>(threads: usize, f: impl FnOnce() -> T) -> T {
    /// Restores the previous value, also when `f` panics (rayon reuses the thread).
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREADS.set(self.0);
        }
    }
    let _restore = Restore(THREADS.replace(threads.max(1)));
    f()
}

/// gemm's parallelism for this thread's products.
fn parallelism() -> Parallelism {
    match THREADS.get() {
        1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// Whether the product overwrites `y` or is added to it (the residual stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Into {
    Overwrite,
    Add,
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

/// From this many rows on, repacking the weight (gemm's choice for a row-major `y`) costs
/// less than the transposed product (measured on the 30 M scoring workload: at 256 rows the
/// column-major product is 19 % faster, at 1 024 rows 15 % slower).
const ROW_MAJOR_FROM_ROWS: usize = 512;

/// `y (=|+=) x·Wᵀ`; see the module docs for shapes.
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
    let (x_op, w_t) = (Operand::rows(x, ldx), Operand::transposed(w, k));
    assert!(
        x_op.fits(m, k) && w_t.fits(k, n),
        "operand too short for {m}×{k}·{k}×{n}"
    );
    assert!(y.len() >= (m - 1) * ldy + n, "y too short for {m}×{n}");
    let padded = min_rows(n, k);
    if m < padded {
        // Zero rows appended: gemm's blocked kernel, whose row results do not depend on m.
        let mut x2 = vec![0f32; padded * k];
        let mut y2 = vec![0f32; padded * n];
        for i in 0..m {
            x2[i * k..(i + 1) * k].copy_from_slice(&x[i * ldx..i * ldx + k]);
            y2[i * n..(i + 1) * n].copy_from_slice(&y[i * ldy..i * ldy + n]);
        }
        column_major(Operand::rows(&x2, k), w_t, &mut y2, n, (padded, n, k), into);
        for i in 0..m {
            y[i * ldy..i * ldy + n].copy_from_slice(&y2[i * n..(i + 1) * n]);
        }
    } else if m >= ROW_MAJOR_FROM_ROWS {
        // SAFETY: bounds checked above; y is a distinct, exclusive borrow.
        unsafe { gemm_into(y, (ldy, 1), into, x_op, w_t, (m, n, k), 1.0) };
    } else {
        column_major(x_op, w_t, y, ldy, (m, n, k), into);
    }
}

/// The fewest rows for which gemm takes its blocked kernel for an `(m, k)·(k, n)` product
/// (see the module docs; the thresholds are gemm 0.19's).
fn min_rows(n: usize, k: usize) -> usize {
    const HORIZONTAL_MAX_ELEMENTS: usize = 256;
    const SMALL_SIDE: usize = 64;
    const SMALL_DEPTH_BLOCK: usize = 512;
    let mut rows = 2.max(HORIZONTAL_MAX_ELEMENTS / n.max(1) + 1);
    if n <= SMALL_SIDE && k > SMALL_DEPTH_BLOCK {
        rows = rows.max(SMALL_SIDE + 1);
    }
    rows
}

/// gemm's micro-kernel wants the matrix it calls `lhs` in column panels. Asked for `x·Wᵀ`
/// with a row-major `y` it transposes the problem to `W·xᵀ` and repacks the whole weight on
/// every call (≈ 20 % of scoring time at 256 rows, measured). Asking for a column-major `yᵀ`
/// keeps `W` as the right-hand side, read in place (`rhs_rs = 1`), and packs only `x`; the
/// product is then transposed into `y`.
fn column_major(
    x: Operand,
    w_t: Operand,
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
        // SAFETY: the operands were bounds-checked by the caller; yt holds m·n values
        // (column j at j·m) and is not aliased.
        unsafe { gemm_into(yt, (1, m), Into::Overwrite, x, w_t, (m, n, k), 1.0) };
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

/// `y (=|+=) scale · a·b` for `a: (m, k)`, `b: (k, n)`, `y: (m, n)` row stride `ldy`: the
/// attention products over a KV cache and the backward pass's products (weight gradients
/// `dYᵀ·X`, input gradients `dY·W`).
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
    // SAFETY: bounds checked above; y is a distinct, exclusive borrow.
    unsafe { gemm_into(y, (ldy, 1), into, a, b, (m, n, k), scale) };
}

/// The one call into gemm: `y (=|+=) scale·a·b`, `y[i][j]` at `i·rs + j·cs`.
///
/// # Safety
/// `a` and `b` must hold `(m, k)` and `(k, n)` at their strides, `y` `(m, n)` at its.
unsafe fn gemm_into(
    y: &mut [f32],
    (rs, cs): (usize, usize),
    into: Into,
    a: Operand,
    b: Operand,
    (m, n, k): (usize, usize, usize),
    scale: f32,
) {
    // SAFETY: the caller guarantees the bounds; `y` is an exclusive borrow, so the
    // destination aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            cs as isize,
            rs as isize,
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
            parallelism(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in (−1, 1).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn a_row_gives_the_same_bits_in_any_number_of_rows() {
        for (n, k) in [(16, 32), (32, 64), (64, 600), (200, 96), (600, 48)] {
            let w = values(n * k, 7);
            let big = 700; // takes the row-major path
            let x = values(big * k, 11);
            let mut all = vec![0f32; big * n];
            matmul_wt(&x, k, &w, &mut all, n, (big, n, k), Into::Overwrite);
            for m in [1, 2, 3, 9, 17, 65, 300] {
                let mut part = vec![0f32; m * n];
                matmul_wt(&x, k, &w, &mut part, n, (m, n, k), Into::Overwrite);
                for i in 0..m {
                    let (a, b) = (&part[i * n..(i + 1) * n], &all[i * n..(i + 1) * n]);
                    assert!(
                        a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits()),
                        "n={n} k={k}: row {i} differs between {m} and {big} rows"
                    );
                }
            }
        }
    }

    #[test]
    fn lending_threads_to_gemm_gives_the_same_bits() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let shapes = [
            (1, 1536, 576),
            (3, 576, 1536),
            (130, 1536, 576),
            (700, 600, 48),
        ];
        for (m, n, k) in shapes {
            let (w, x) = (values(n * k, 3), values(m * k, 5));
            let run = |threads: usize| {
                let mut y = values(m * n, 9);
                pool.install(|| {
                    with_threads(threads, || {
                        matmul_wt(&x, k, &w, &mut y, n, (m, n, k), Into::Add)
                    })
                });
                y.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
            };
            assert_eq!(run(1), run(4), "{m}×{k}·{k}×{n}");
        }
        assert_eq!(THREADS.get(), 1, "restored after the call");
    }
}
