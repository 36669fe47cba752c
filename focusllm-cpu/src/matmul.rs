//! Products with weights: f32 matrices through the `gemm` crate (fast for both prefill and
//! single-row decode shapes); half-precision and block-quantised matrices in their stored form for
//! a few rows, and through `gemm` on panels of rows widened to f32 beyond that.

use std::ops::Range;

use gemm::Parallelism;

use crate::tensor::CpuTensor;
use crate::weight::CpuWeight;
use crate::{halfdot, qdot};

/// Activation rows up to which a product reads the stored weights directly; above it, the
/// widen-then-`gemm` path is faster (the widening is shared by more rows); chosen by benchmarking
/// both paths on the default model's shapes.
pub(crate) const DIRECT_MAX_ROWS: usize = 24;

/// f32 values in one dequantised panel of weight rows (4 MiB).
const PANEL_VALUES: usize = 1 << 20;

/// `x @ w^T + bias`: `x` is `[m, k]`, `w` is `[n, k]`; runs on the current rayon pool.
pub(crate) fn linear(x: &CpuTensor, w: &CpuWeight, bias: Option<&CpuTensor>) -> CpuTensor {
    let (m, n) = (x.rows, w.rows());
    let mut out = match w {
        CpuWeight::Dense(w) => {
            let mut out = vec![0.0f32; m * n];
            gemm_nt(x, &w.data, n, &mut out, 0);
            out
        }
        CpuWeight::Half(h) if m <= DIRECT_MAX_ROWS => halfdot::matmul(x, h),
        CpuWeight::Half(h) => panels(x, h.rows, |rows, out| h.widen_rows(rows, out)),
        CpuWeight::Quantized(q) if m <= DIRECT_MAX_ROWS => qdot::matmul(x, q),
        CpuWeight::Quantized(q) => panels(x, q.rows, |rows, out| q.dequantize_rows(rows, out)),
    };
    if let Some(b) = bias {
        for row in out.chunks_exact_mut(n.max(1)) {
            for (y, &bb) in row.iter_mut().zip(&b.data) {
                *y += bb;
            }
        }
    }
    debug_assert_eq!(out.len(), m * n);
    CpuTensor::new(out, m, n)
}

/// `x @ w^T` for an `n`-row weight matrix `w` by widening a panel of its rows at a time with
/// `widen(rows, out)`.
fn panels(x: &CpuTensor, n: usize, widen: impl Fn(Range<usize>, &mut [f32])) -> Vec<f32> {
    let (m, k) = (x.rows, x.cols);
    let mut out = vec![0.0f32; m * n];
    let panel_rows = (PANEL_VALUES / k.max(1)).clamp(1, n.max(1));
    let mut panel = vec![0.0f32; panel_rows * k];
    let mut start = 0;
    while start < n {
        let rows = panel_rows.min(n - start);
        let panel = &mut panel[..rows * k];
        widen(start..start + rows, panel);
        gemm_nt(x, panel, n, &mut out, start);
        start += rows;
    }
    out
}

/// Writes `x @ w^T` (`x` `[m, k]`, `w` `[rows, k]` row-major) into columns
/// `col..col + rows` of `out`, a row-major `[m, out_cols]` matrix.
fn gemm_nt(x: &CpuTensor, w: &[f32], out_cols: usize, out: &mut [f32], col: usize) {
    let (m, k) = (x.rows, x.cols);
    let rows = w.len().checked_div(k).unwrap_or(0);
    assert!(w.len() == rows * k && col + rows <= out_cols && out.len() == m * out_cols, "gemm operands out of range");
    if m == 0 || rows == 0 || k == 0 {
        return;
    }
    // SAFETY: checked above: lhs is row-major [m, k]; rhs is w^T, element (kk, j) at w[j*k + kk];
    // dst element (i, j) at out[i*out_cols + col + j], inside `out` for i < m, j < rows.
    unsafe {
        gemm::gemm(
            m,
            rows,
            k,
            out.as_mut_ptr().add(col),
            1,
            out_cols as isize,
            false,
            x.data.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::Rayon(0),
        );
    }
}
