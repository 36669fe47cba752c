//! Products of a few f32 activation rows with an f16 or bf16 weight matrix, widening the weights
//! in registers: a portable kernel, and an AVX2+FMA+F16C one chosen at run time on x86-64.

use focusllm_core::DType;
use half::{bf16, f16};

use crate::direct::{self, Kernel, RowDot};
use crate::half_matrix::HalfMatrix;
use crate::tensor::CpuTensor;

/// `x @ w^T`: `x` is `[m, k]` (`m` small), `w` is `[n, k]`; returns `[m, n]` row-major. Runs on
/// the current rayon pool.
pub(crate) fn matmul(x: &CpuTensor, w: &HalfMatrix) -> Vec<f32> {
    matmul_with(Kernel::detect(), x, w)
}

/// [`matmul`] with a chosen kernel.
fn matmul_with(kernel: Kernel, x: &CpuTensor, w: &HalfMatrix) -> Vec<f32> {
    assert_eq!(x.cols, w.cols, "activation width against weight width");
    direct::matmul(x, &HalfProduct { kernel, w })
}

struct HalfProduct<'a> {
    kernel: Kernel,
    w: &'a HalfMatrix,
}

impl RowDot for HalfProduct<'_> {
    fn rows(&self) -> usize {
        self.w.rows
    }

    #[inline]
    fn dot<const R: usize>(&self, j: usize, _first: usize, xs: [&[f32]; R]) -> [f32; R] {
        let w = self.w.row(j);
        assert!(xs.iter().all(|x| x.len() == w.len()), "kernel operands out of range");
        match (self.kernel, self.w.dtype) {
            (Kernel::Portable, dtype) => portable::dot(dtype, w, xs),
            // SAFETY: the CPU has AVX2, FMA and F16C (checked in `Kernel::detect`, at both levels),
            // and every activation row is as long as the weight row (checked above).
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2 | Kernel::Avx512, DType::F16) => unsafe { avx2::dot::<R, false>(w, xs) },
            // SAFETY: as above. (A `HalfMatrix` holds only F16 and BF16.)
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2 | Kernel::Avx512, _) => unsafe { avx2::dot::<R, true>(w, xs) },
        }
    }
}

/// Writes the values whose bits are `src` (of `dtype`, `F16` or `BF16`) to `out`, as f32.
pub(crate) fn widen(kernel: Kernel, dtype: DType, src: &[u16], out: &mut [f32]) {
    assert_eq!(src.len(), out.len(), "widening lengths");
    match (kernel, dtype) {
        (Kernel::Portable, dtype) => portable::widen(dtype, src, out),
        // SAFETY: the CPU has AVX2 and F16C (checked in `Kernel::detect`); lengths checked above.
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2 | Kernel::Avx512, DType::F16) => unsafe { avx2::widen::<false>(src, out) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2 | Kernel::Avx512, _) => unsafe { avx2::widen::<true>(src, out) },
    }
}

/// One value of `dtype` (`F16`, else `BF16`) from its bits.
#[inline]
fn value(dtype: DType, bits: u16) -> f32 {
    if dtype == DType::F16 {
        f16::from_bits(bits).to_f32()
    } else {
        bf16::from_bits(bits).to_f32()
    }
}

mod portable {
    use super::*;

    pub(super) fn dot<const R: usize>(dtype: DType, w: &[u16], xs: [&[f32]; R]) -> [f32; R] {
        let mut acc = [0.0f32; R];
        for (i, &bits) in w.iter().enumerate() {
            let v = value(dtype, bits);
            for (a, x) in acc.iter_mut().zip(&xs) {
                *a += v * x[i];
            }
        }
        acc
    }

    pub(super) fn widen(dtype: DType, src: &[u16], out: &mut [f32]) {
        for (o, &bits) in out.iter_mut().zip(src) {
            *o = value(dtype, bits);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::*;
    use crate::direct::avx2::hsum;

    /// Eight values at `p` widened to f32: bf16 by a shift into the high half, f16 by F16C.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8<const BF16: bool>(p: *const u16) -> __m256 {
        let h = _mm_loadu_si128(p as *const __m128i);
        if BF16 {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        } else {
            _mm256_cvtph_ps(h)
        }
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C; every `xs[r]` holds at least `w.len()` values.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot<const R: usize, const BF16: bool>(w: &[u16], xs: [&[f32]; R]) -> [f32; R] {
        let (n, p) = (w.len(), w.as_ptr());
        // Two chains per row: the loop is bound by the latency of the multiply-adds.
        let mut acc0 = [_mm256_setzero_ps(); R];
        let mut acc1 = [_mm256_setzero_ps(); R];
        let mut i = 0;
        while i + 16 <= n {
            let (w0, w1) = (load8::<BF16>(p.add(i)), load8::<BF16>(p.add(i + 8)));
            for r in 0..R {
                let x = xs[r].as_ptr().add(i);
                acc0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), acc0[r]);
                acc1[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x.add(8)), acc1[r]);
            }
            i += 16;
        }
        if i + 8 <= n {
            let w0 = load8::<BF16>(p.add(i));
            for r in 0..R {
                acc0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xs[r].as_ptr().add(i)), acc0[r]);
            }
            i += 8;
        }
        let dtype = if BF16 { DType::BF16 } else { DType::F16 };
        let mut out = [0.0f32; R];
        for r in 0..R {
            out[r] = hsum(_mm256_add_ps(acc0[r], acc1[r]));
            for t in i..n {
                out[r] += value(dtype, w[t]) * xs[r][t];
            }
        }
        out
    }

    /// # Safety
    /// The CPU has AVX2 and F16C; `out` is as long as `src`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn widen<const BF16: bool>(src: &[u16], out: &mut [f32]) {
        let n = src.len();
        let mut i = 0;
        while i + 8 <= n {
            _mm256_storeu_ps(out.as_mut_ptr().add(i), load8::<BF16>(src.as_ptr().add(i)));
            i += 8;
        }
        let dtype = if BF16 { DType::BF16 } else { DType::F16 };
        for t in i..n {
            out[t] = value(dtype, src[t]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::tests::check_products;
    use crate::half_matrix::tests::random_half;

    /// Every kernel, both types, 1 to 6 activation rows, widths with and without a tail: the
    /// product equals the f64 product with the widened matrix within f32 rounding.
    #[test]
    fn products_match_the_widened_matrix() {
        for (n, k) in [(37, 160), (5, 45)] {
            for dtype in [DType::F16, DType::BF16] {
                let t = random_half(dtype, n, k, 13);
                let w = HalfMatrix::from_host(&t).unwrap();
                check_products(
                    n,
                    k,
                    &t.to_f32(),
                    |kernel, x| matmul_with(kernel, x, &w),
                    &format!("{dtype:?} {n}x{k}"),
                );
            }
        }
    }

    #[test]
    fn widening_is_exact_in_every_kernel() {
        for dtype in [DType::F16, DType::BF16] {
            let t = random_half(dtype, 3, 21, 2);
            let m = HalfMatrix::from_host(&t).unwrap();
            for kernel in Kernel::all_available() {
                let mut out = vec![0.0; m.bits.len()];
                widen(kernel, dtype, &m.bits, &mut out);
                assert_eq!(out, t.to_f32(), "{kernel:?} {dtype:?}");
            }
        }
    }
}
