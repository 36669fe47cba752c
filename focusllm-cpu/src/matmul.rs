//! Dense products against weights, through the `gemm` crate (fast for both prefill and single-row
//! decode shapes).

use gemm::Parallelism;

use crate::tensor::CpuTensor;

/// `x @ w^T + bias`: `x` is `[m, k]`, `w` is `[n, k]`; runs on the current rayon pool.
pub(crate) fn linear(x: &CpuTensor, w: &CpuTensor, bias: Option<&CpuTensor>) -> CpuTensor {
    let (m, k, n) = (x.rows, x.cols, w.rows);
    debug_assert_eq!(w.cols, k);
    let mut out = vec![0.0f32; m * n];
    if m > 0 && n > 0 && k > 0 {
        // SAFETY: the pointers cover m*k, n*k and m*n elements with the strides given:
        // lhs row-major [m,k]; rhs is w^T, element (kk, j) at w[j*k + kk]; dst row-major [m,n].
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                x.data.as_ptr(),
                1,
                k as isize,
                w.data.as_ptr(),
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
    if let Some(b) = bias {
        for row in out.chunks_exact_mut(n) {
            for (y, &bb) in row.iter_mut().zip(&b.data) {
                *y += bb;
            }
        }
    }
    CpuTensor::new(out, m, n)
}
