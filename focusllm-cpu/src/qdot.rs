//! Products of a few f32 activation rows with a block-quantised weight matrix, reading the quants
//! directly: a portable kernel, and an AVX2+FMA one chosen at run time on x86-64.
//!
//! Per block the kernels compute `d * sum(q_i * x_i)`, and for Q4_1 add `m * sum(x_i)` from
//! per-block sums of the activation row taken once per call: the same value as the dot product
//! with the dequantised row `d * q_i + m`, summed in another order.

use focusllm_core::quant::{self, Block, BLOCK};
use focusllm_core::DType;

use crate::direct::{self, Kernel, RowDot};
use crate::quantized::QuantMatrix;
use crate::tensor::CpuTensor;

/// `x @ w^T`: `x` is `[m, k]` (`m` small), `w` is `[n, k]`; returns `[m, n]` row-major. Runs on
/// the current rayon pool.
pub(crate) fn matmul(x: &CpuTensor, w: &QuantMatrix) -> Vec<f32> {
    matmul_with(Kernel::detect(), x, w)
}

/// [`matmul`] with a chosen kernel.
fn matmul_with(kernel: Kernel, x: &CpuTensor, w: &QuantMatrix) -> Vec<f32> {
    assert_eq!(x.cols, w.cols, "activation width against weight width");
    // Per-block sums of each activation row, for Q4_1's minimum term.
    let sums = (0..x.rows)
        .map(|r| {
            if w.dtype == DType::Q4_1 {
                x.row(r).chunks_exact(BLOCK).map(|c| c.iter().sum()).collect()
            } else {
                Vec::new()
            }
        })
        .collect();
    direct::matmul(x, &QuantProduct { kernel, w, sums })
}

/// A quantised matrix with the block sums of the activation rows it is multiplied with.
struct QuantProduct<'a> {
    kernel: Kernel,
    w: &'a QuantMatrix,
    /// `sums[r]`: per-block sums of activation row `r` (Q4_1 only; empty for the other types).
    sums: Vec<Vec<f32>>,
}

impl RowDot for QuantProduct<'_> {
    fn rows(&self) -> usize {
        self.w.rows
    }

    #[inline]
    fn dot<const R: usize>(&self, j: usize, first: usize, xs: [&[f32]; R]) -> [f32; R] {
        dot(self.kernel, self.w, j, xs, std::array::from_fn(|r| self.sums[first + r].as_slice()))
    }
}

/// The products of weight row `j` with each activation row `xs[r]` (`w.cols` values), given the
/// per-block sums `sums[r]` of each (used by Q4_1 only; empty for the other types).
#[inline]
fn dot<const R: usize>(kernel: Kernel, w: &QuantMatrix, j: usize, xs: [&[f32]; R], sums: [&[f32]; R]) -> [f32; R] {
    let sums_needed = if w.dtype == DType::Q4_1 { w.blocks_per_row() } else { 0 };
    assert!(
        j < w.rows && xs.iter().all(|x| x.len() == w.cols) && sums.iter().all(|s| s.len() == sums_needed),
        "kernel operands out of range"
    );
    match (kernel, w.dtype) {
        (Kernel::Portable, _) => portable::dot(w, j, xs, sums),
        // SAFETY: the CPU has AVX2 and FMA (checked in `Kernel::detect`), and the row, the activations
        // and the sums cover what the kernel reads (checked above).
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2, DType::Q8_0) => unsafe { avx2::dot::<R, { avx2::Q8_0 }>(w, j, xs, sums) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2, DType::Q4_0) => unsafe { avx2::dot::<R, { avx2::Q4_0 }>(w, j, xs, sums) },
        // SAFETY: as above. (A `QuantMatrix` holds only the three block types.)
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2, _) => unsafe { avx2::dot::<R, { avx2::Q4_1 }>(w, j, xs, sums) },
        // SAFETY: the CPU has AVX-512 F (checked in `Kernel::detect`); operands checked above.
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, DType::Q8_0) => unsafe { avx512::dot::<R, { avx2::Q8_0 }>(w, j, xs, sums) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, DType::Q4_0) => unsafe { avx512::dot::<R, { avx2::Q4_0 }>(w, j, xs, sums) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, _) => unsafe { avx512::dot::<R, { avx2::Q4_1 }>(w, j, xs, sums) },
    }
}

mod portable {
    use super::*;

    pub(super) fn dot<const R: usize>(w: &QuantMatrix, j: usize, xs: [&[f32]; R], sums: [&[f32]; R]) -> [f32; R] {
        let mut acc = [0.0f32; R];
        let mut q = [0.0f32; BLOCK];
        for b in 0..w.blocks_per_row() {
            let block = w.block(j, b);
            // The quants as f32 integers: the block dequantised with unit scale and no minimum.
            quant::dequantize_block(w.dtype, &Block { scale: 1.0, min: 0.0, quants: block.quants }, &mut q);
            for ((a, x), s) in acc.iter_mut().zip(&xs).zip(&sums) {
                let t: f32 = q.iter().zip(&x[b * BLOCK..(b + 1) * BLOCK]).map(|(q, x)| q * x).sum();
                *a += block.scale * t + s.get(b).map_or(0.0, |s| block.min * s);
            }
        }
        acc
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::*;
    use crate::direct::avx2::hsum;

    /// The 32 quants of the block at `q` as f32 integers, eight elements per vector, in order.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn unpack<const T: u8>(q: *const u8) -> [__m256; 4] {
        let bytes = |i: usize| _mm_loadl_epi64(q.add(i) as *const __m128i);
        if T == Q8_0 {
            let f = |i| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes(i)));
            return [f(0), f(8), f(16), f(24)];
        }
        // Bytes 0..8 and 8..16 widened to 32-bit lanes; the low nibbles are elements 0..16, the
        // high nibbles elements 16..32.
        let (v0, v1) = (_mm256_cvtepu8_epi32(bytes(0)), _mm256_cvtepu8_epi32(bytes(8)));
        let mask = _mm256_set1_epi32(0x0F);
        let mut n = [
            _mm256_and_si256(v0, mask),
            _mm256_and_si256(v1, mask),
            _mm256_srli_epi32::<4>(v0),
            _mm256_srli_epi32::<4>(v1),
        ];
        if T == Q4_0 {
            for v in &mut n {
                *v = _mm256_sub_epi32(*v, _mm256_set1_epi32(8));
            }
        }
        n.map(|v| _mm256_cvtepi32_ps(v))
    }

    /// The block types, as the kernel's const parameter.
    pub(super) const Q8_0: u8 = 0;
    pub(super) const Q4_0: u8 = 1;
    pub(super) const Q4_1: u8 = 2;

    /// # Safety
    /// The CPU has AVX2 and FMA; `w` holds blocks of type `T`; `j < w.rows`; every `xs[r]` holds
    /// `w.cols` values and, for Q4_1, every `sums[r]` one value per block of a row.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot<const R: usize, const T: u8>(
        w: &QuantMatrix,
        j: usize,
        xs: [&[f32]; R],
        sums: [&[f32]; R],
    ) -> [f32; R] {
        let (bpr, qb) = (w.blocks_per_row(), w.quant_bytes());
        let quants = w.quants.as_ptr().add(j * bpr * qb);
        let scales = w.scales.as_ptr().add(j * bpr);
        let mins = if T == Q4_1 { w.mins.as_ptr().add(j * bpr) } else { scales };
        let mut acc = [_mm256_setzero_ps(); R];
        let mut min_acc = [0.0f32; R];
        for b in 0..bpr {
            let [w0, w1, w2, w3] = unpack::<T>(quants.add(b * qb));
            let d = _mm256_set1_ps(*scales.add(b));
            for r in 0..R {
                let x = xs[r].as_ptr().add(b * BLOCK);
                // Two short chains rather than one long one: the loop is bound by latency.
                let t01 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x.add(8)), _mm256_mul_ps(w0, _mm256_loadu_ps(x)));
                let t23 =
                    _mm256_fmadd_ps(w3, _mm256_loadu_ps(x.add(24)), _mm256_mul_ps(w2, _mm256_loadu_ps(x.add(16))));
                acc[r] = _mm256_fmadd_ps(d, _mm256_add_ps(t01, t23), acc[r]);
                if T == Q4_1 {
                    min_acc[r] += *mins.add(b) * *sums[r].as_ptr().add(b);
                }
            }
        }
        let mut out = [0.0f32; R];
        for r in 0..R {
            out[r] = hsum(acc[r]) + min_acc[r];
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::avx2::{Q4_0, Q4_1, Q8_0};
    use super::*;

    /// The 32 quants of the block at `q` as f32 integers, sixteen elements per vector, in order.
    #[target_feature(enable = "avx512f")]
    unsafe fn unpack<const T: u8>(q: *const u8) -> [__m512; 2] {
        let bytes = |i: usize| _mm_loadu_si128(q.add(i) as *const __m128i);
        if T == Q8_0 {
            let f = |i| _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes(i)));
            return [f(0), f(16)];
        }
        // Byte i holds element i in its low nibble and element i + 16 in its high one.
        let v = _mm512_cvtepu8_epi32(bytes(0));
        let mut n = [_mm512_and_si512(v, _mm512_set1_epi32(0x0F)), _mm512_srli_epi32::<4>(v)];
        if T == Q4_0 {
            for v in &mut n {
                *v = _mm512_sub_epi32(*v, _mm512_set1_epi32(8));
            }
        }
        n.map(|v| _mm512_cvtepi32_ps(v))
    }

    /// # Safety
    /// The CPU has AVX-512 F; otherwise as [`super::avx2::dot`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot<const R: usize, const T: u8>(
        w: &QuantMatrix,
        j: usize,
        xs: [&[f32]; R],
        sums: [&[f32]; R],
    ) -> [f32; R] {
        let (bpr, qb) = (w.blocks_per_row(), w.quant_bytes());
        let quants = w.quants.as_ptr().add(j * bpr * qb);
        let scales = w.scales.as_ptr().add(j * bpr);
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..bpr {
            let [w0, w1] = unpack::<T>(quants.add(b * qb));
            let d = _mm512_set1_ps(*scales.add(b));
            for r in 0..R {
                let x = xs[r].as_ptr().add(b * BLOCK);
                let t = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x.add(16)), _mm512_mul_ps(w0, _mm512_loadu_ps(x)));
                acc[r] = _mm512_fmadd_ps(d, t, acc[r]);
            }
        }
        if T == Q4_1 {
            // The minimum term, `sum_b m_b * sums[r][b]`, sixteen blocks a step (the last step
            // masked), into the same accumulators.
            let mins = w.mins.as_ptr().add(j * bpr);
            for b in (0..bpr).step_by(16) {
                let mask: __mmask16 = if bpr - b >= 16 { !0 } else { (1u16 << (bpr - b)) - 1 };
                let m = _mm512_maskz_loadu_ps(mask, mins.add(b));
                for r in 0..R {
                    acc[r] = _mm512_fmadd_ps(m, _mm512_maskz_loadu_ps(mask, sums[r].as_ptr().add(b)), acc[r]);
                }
            }
        }
        acc.map(|a| _mm512_reduce_add_ps(a))
    }
}

#[cfg(test)]
mod tests {
    use focusllm_core::HostTensor;

    use super::*;
    use crate::direct::tests::check_products;
    use crate::quantized::tests::random_blocks;

    /// Every kernel, every type, 1 to 6 activation rows: the product equals the f64 product with
    /// the dequantised matrix within f32 rounding.
    #[test]
    fn products_match_the_dequantised_matrix() {
        // Rows of 5 and of 18 blocks: the AVX-512 build sums the minima sixteen blocks a step.
        let types = [DType::Q8_0, DType::Q4_0, DType::Q4_1];
        for ((n, k), dtype) in [(37, 160), (9, 576)].into_iter().flat_map(|s| types.map(|d| (s, d))) {
            let t =
                HostTensor { name: "w".into(), dtype, shape: vec![n, k], bytes: random_blocks(dtype, n, k, 11).into() };
            let w = QuantMatrix::from_host(&t).unwrap();
            check_products(n, k, &t.to_f32(), |kernel, x| matmul_with(kernel, x, &w), &format!("{dtype:?}"));
        }
    }
}
