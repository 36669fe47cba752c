//! Products of a few f32 activation rows with a block-quantised weight matrix, reading the quants
//! directly: a portable kernel, and AVX2+FMA and AVX-512 ones chosen at run time on x86-64.
//!
//! Per group the kernels compute `d * sum(q_i * x_i)`, and where the groups have offsets add
//! `m * sum(x_i)` from per-group sums of the activation row taken once per call: the same value as
//! the dot product with the dequantised row `d * q_i + m`, summed in another order.

use focusllm_core::quant::BLOCK;

use crate::direct::{self, Kernel, RowDot};
use crate::quantized::{Packing, QuantMatrix};
use crate::tensor::CpuTensor;

/// `x @ w^T`: `x` is `[m, k]` (`m` small), `w` is `[n, k]`; returns `[m, n]` row-major. Runs on
/// the current rayon pool.
pub(crate) fn matmul(x: &CpuTensor, w: &QuantMatrix) -> Vec<f32> {
    matmul_with(Kernel::detect(), x, w)
}

/// [`matmul`] with a chosen kernel.
fn matmul_with(kernel: Kernel, x: &CpuTensor, w: &QuantMatrix) -> Vec<f32> {
    assert_eq!(x.cols, w.cols, "activation width against weight width");
    // Per-group sums of each activation row, for the offset term.
    let sums = (0..x.rows)
        .map(|r| {
            if w.offsets.is_empty() {
                Vec::new()
            } else {
                x.row(r).chunks_exact(w.group).map(|c| c.iter().sum()).collect()
            }
        })
        .collect();
    direct::matmul(x, &QuantProduct { kernel, w, sums })
}

/// A quantised matrix with the group sums of the activation rows it is multiplied with.
struct QuantProduct<'a> {
    kernel: Kernel,
    w: &'a QuantMatrix,
    /// `sums[r]`: per-group sums of activation row `r` (empty when the groups have no offsets).
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
/// per-group sums `sums[r]` of each (used where the groups have offsets; empty otherwise).
#[inline]
fn dot<const R: usize>(kernel: Kernel, w: &QuantMatrix, j: usize, xs: [&[f32]; R], sums: [&[f32]; R]) -> [f32; R] {
    let sums_needed = if w.offsets.is_empty() { 0 } else { w.groups_per_row() };
    assert!(
        j < w.rows && xs.iter().all(|x| x.len() == w.cols) && sums.iter().all(|s| s.len() == sums_needed),
        "kernel operands out of range"
    );
    #[cfg(target_arch = "x86_64")]
    {
        use avx2::{BYTES, NIBBLES, SIGNED_NIBBLES};
        let packing = match w.packing {
            Packing::Bytes => BYTES,
            Packing::Nibbles => NIBBLES,
            Packing::SignedNibbles => SIGNED_NIBBLES,
        };
        // The layouts that occur: bytes in groups of 32 or 16, with or without offsets; nibbles in
        // groups of 32, unsigned with offsets or signed without.
        macro_rules! layouts {
            ($m:ident) => {
                match (packing, w.group == 16, !w.offsets.is_empty()) {
                    (BYTES, false, false) => $m::dot::<R, BYTES, false, false>(w, j, xs, sums),
                    (BYTES, false, true) => $m::dot::<R, BYTES, false, true>(w, j, xs, sums),
                    (BYTES, true, false) => $m::dot::<R, BYTES, true, false>(w, j, xs, sums),
                    (BYTES, true, true) => $m::dot::<R, BYTES, true, true>(w, j, xs, sums),
                    (NIBBLES, false, true) => $m::dot::<R, NIBBLES, false, true>(w, j, xs, sums),
                    (SIGNED_NIBBLES, false, false) => $m::dot::<R, SIGNED_NIBBLES, false, false>(w, j, xs, sums),
                    _ => portable::dot(w, j, xs, sums),
                }
            };
        }
        match kernel {
            Kernel::Portable => {}
            // SAFETY: the CPU has AVX2 and FMA (checked in `Kernel::detect`); the row, the
            // activations and the sums cover what the kernel reads (checked above), and the const
            // parameters are the matrix's own layout.
            Kernel::Avx2 => return unsafe { layouts!(avx2) },
            // SAFETY: the CPU has AVX-512 F (checked in `Kernel::detect`); otherwise as above.
            Kernel::Avx512 => return unsafe { layouts!(avx512) },
        }
    }
    let _ = kernel;
    portable::dot(w, j, xs, sums)
}

mod portable {
    use super::*;

    pub(super) fn dot<const R: usize>(w: &QuantMatrix, j: usize, xs: [&[f32]; R], sums: [&[f32]; R]) -> [f32; R] {
        let mut acc = [0.0f32; R];
        let mut q = [0i8; BLOCK];
        let mut g = j * w.groups_per_row();
        for b in 0..w.blocks_per_row() {
            w.integers(j, b, &mut q);
            for (i, q) in q.chunks_exact(w.group).enumerate() {
                let (s, m) = (w.scales[g], w.offsets.get(g).copied().unwrap_or(0.0));
                let at = b * BLOCK + i * w.group;
                for ((a, x), sum) in acc.iter_mut().zip(&xs).zip(&sums) {
                    let t: f32 = q.iter().zip(&x[at..at + w.group]).map(|(&q, x)| f32::from(q) * x).sum();
                    *a += s * t + sum.get(g - j * w.groups_per_row()).map_or(0.0, |sum| m * sum);
                }
                g += 1;
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

    /// The packings, as the kernels' const parameter.
    pub(super) const BYTES: u8 = 0;
    pub(super) const SIGNED_NIBBLES: u8 = 1;
    pub(super) const NIBBLES: u8 = 2;

    /// The 32 integers of the piece at `q` as f32, eight elements per vector, in order.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn unpack<const P: u8>(q: *const u8) -> [__m256; 4] {
        let bytes = |i: usize| _mm_loadl_epi64(q.add(i) as *const __m128i);
        if P == BYTES {
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
        if P == SIGNED_NIBBLES {
            for v in &mut n {
                *v = _mm256_sub_epi32(*v, _mm256_set1_epi32(8));
            }
        }
        n.map(|v| _mm256_cvtepi32_ps(v))
    }

    /// # Safety
    /// The CPU has AVX2 and FMA; `w` is packed as `P` in groups of 16 (`G16`) or 32, with offsets
    /// when `OFF`; `j < w.rows`; every `xs[r]` holds `w.cols` values and, when `OFF`, every
    /// `sums[r]` one value per group of a row.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot<const R: usize, const P: u8, const G16: bool, const OFF: bool>(
        w: &QuantMatrix,
        j: usize,
        xs: [&[f32]; R],
        sums: [&[f32]; R],
    ) -> [f32; R] {
        let (bpr, qb, gpr) = (w.blocks_per_row(), w.quant_bytes(), w.groups_per_row());
        let quants = w.quants.as_ptr().add(j * bpr * qb);
        let scales = w.scales.as_ptr().add(j * gpr);
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..bpr {
            let [w0, w1, w2, w3] = unpack::<P>(quants.add(b * qb));
            let (d0, d1) = if G16 {
                (_mm256_set1_ps(*scales.add(2 * b)), _mm256_set1_ps(*scales.add(2 * b + 1)))
            } else {
                let d = _mm256_set1_ps(*scales.add(b));
                (d, d)
            };
            for r in 0..R {
                let x = xs[r].as_ptr().add(b * BLOCK);
                // Two short chains rather than one long one: the loop is bound by latency.
                let t01 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x.add(8)), _mm256_mul_ps(w0, _mm256_loadu_ps(x)));
                let t23 =
                    _mm256_fmadd_ps(w3, _mm256_loadu_ps(x.add(24)), _mm256_mul_ps(w2, _mm256_loadu_ps(x.add(16))));
                acc[r] = if G16 {
                    _mm256_fmadd_ps(d1, t23, _mm256_fmadd_ps(d0, t01, acc[r]))
                } else {
                    _mm256_fmadd_ps(d0, _mm256_add_ps(t01, t23), acc[r])
                };
            }
        }
        let mut out = [0.0f32; R];
        for r in 0..R {
            out[r] = hsum(acc[r]);
        }
        if OFF {
            // The offset term, `sum_g m_g * sums[r][g]`.
            let offsets = &w.offsets[j * gpr..(j + 1) * gpr];
            for r in 0..R {
                out[r] += offsets.iter().zip(sums[r]).map(|(m, s)| m * s).sum::<f32>();
            }
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::avx2::{BYTES, SIGNED_NIBBLES};
    use super::*;

    /// The 32 integers of the piece at `q` as f32, sixteen elements per vector, in order.
    #[target_feature(enable = "avx512f")]
    unsafe fn unpack<const P: u8>(q: *const u8) -> [__m512; 2] {
        let bytes = |i: usize| _mm_loadu_si128(q.add(i) as *const __m128i);
        if P == BYTES {
            let f = |i| _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes(i)));
            return [f(0), f(16)];
        }
        // Byte i holds element i in its low nibble and element i + 16 in its high one.
        let v = _mm512_cvtepu8_epi32(bytes(0));
        let mut n = [_mm512_and_si512(v, _mm512_set1_epi32(0x0F)), _mm512_srli_epi32::<4>(v)];
        if P == SIGNED_NIBBLES {
            for v in &mut n {
                *v = _mm512_sub_epi32(*v, _mm512_set1_epi32(8));
            }
        }
        n.map(|v| _mm512_cvtepi32_ps(v))
    }

    /// # Safety
    /// The CPU has AVX-512 F; otherwise as [`super::avx2::dot`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot<const R: usize, const P: u8, const G16: bool, const OFF: bool>(
        w: &QuantMatrix,
        j: usize,
        xs: [&[f32]; R],
        sums: [&[f32]; R],
    ) -> [f32; R] {
        let (bpr, qb, gpr) = (w.blocks_per_row(), w.quant_bytes(), w.groups_per_row());
        let quants = w.quants.as_ptr().add(j * bpr * qb);
        let scales = w.scales.as_ptr().add(j * gpr);
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..bpr {
            let [w0, w1] = unpack::<P>(quants.add(b * qb));
            let (d0, d1) = if G16 {
                (_mm512_set1_ps(*scales.add(2 * b)), _mm512_set1_ps(*scales.add(2 * b + 1)))
            } else {
                let d = _mm512_set1_ps(*scales.add(b));
                (d, d)
            };
            for r in 0..R {
                let x = xs[r].as_ptr().add(b * BLOCK);
                let (t0, t1) = (_mm512_mul_ps(w0, _mm512_loadu_ps(x)), _mm512_loadu_ps(x.add(16)));
                acc[r] = if G16 {
                    _mm512_fmadd_ps(d1, _mm512_mul_ps(w1, t1), _mm512_fmadd_ps(d0, t0, acc[r]))
                } else {
                    _mm512_fmadd_ps(d0, _mm512_fmadd_ps(w1, t1, t0), acc[r])
                };
            }
        }
        if OFF {
            // The offset term, `sum_g m_g * sums[r][g]`, sixteen groups a step (the last step
            // masked), into the same accumulators.
            let offsets = w.offsets.as_ptr().add(j * gpr);
            for g in (0..gpr).step_by(16) {
                let mask: __mmask16 = if gpr - g >= 16 { !0 } else { (1u16 << (gpr - g)) - 1 };
                let m = _mm512_maskz_loadu_ps(mask, offsets.add(g));
                for r in 0..R {
                    acc[r] = _mm512_fmadd_ps(m, _mm512_maskz_loadu_ps(mask, sums[r].as_ptr().add(g)), acc[r]);
                }
            }
        }
        acc.map(|a| _mm512_reduce_add_ps(a))
    }
}

#[cfg(test)]
mod tests {
    use focusllm_core::{DType, HostTensor};

    use super::*;
    use crate::direct::tests::check_products;
    use crate::quantized::tests::random_blocks;

    /// Every kernel, every type, 1 to 6 activation rows: the product equals the f64 product with
    /// the dequantised matrix within f32 rounding.
    #[test]
    fn products_match_the_dequantised_matrix() {
        // Rows of 16 and of 144 pieces of 32 (8 to 288 groups): the AVX-512 build sums the
        // offsets sixteen groups a step.
        for ((n, k), dtype) in [(37, 512), (9, 4608)].into_iter().flat_map(|s| DType::QUANTIZED.map(|d| (s, d))) {
            let t =
                HostTensor { name: "w".into(), dtype, shape: vec![n, k], bytes: random_blocks(dtype, n, k, 11).into() };
            let w = QuantMatrix::from_host(&t).unwrap();
            check_products(n, k, &t.to_f32(), |kernel, x| matmul_with(kernel, x, &w), &format!("{dtype:?}"));
        }
    }
}
