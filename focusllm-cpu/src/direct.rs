//! Products of a few f32 activation rows with a weight matrix that is read in its stored form
//! (quantised blocks or half precision), one weight row at a time: the parallel driver shared by
//! those kernels, and the choice between their portable and AVX2 builds.
//!
//! Decoding is bound by the bytes of weights read, so these products never widen a whole matrix
//! to f32; each weight row is read once for every activation row of the product.

use rayon::prelude::*;

use crate::tensor::CpuTensor;

/// Weight rows per parallel task.
const ROWS_PER_TASK: usize = 16;

/// Activation rows one kernel call serves (each weight row is unpacked once for all of them).
const GROUP: usize = 8;

/// Which build of a row kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kernel {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX2, FMA and F16C intrinsics (x86-64 with all three, checked at run time).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 F intrinsics where a kernel has them, the AVX2 build elsewhere (x86-64 with
    /// AVX-512 F and everything [`Kernel::Avx2`] needs, checked at run time).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The environment variable that caps the CPU kernels' level (`portable`, `avx2` or `avx512`), so
/// that a lower build can be run and tested on a CPU that has a higher one.
pub const KERNEL_VARIABLE: &str = "FOCUSLLM_CPU_KERNEL";

impl Kernel {
    /// The fastest build this CPU supports, capped by [`KERNEL_VARIABLE`] (read once).
    pub(crate) fn detect() -> Kernel {
        static CHOSEN: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let best = Kernel::best();
            match std::env::var(KERNEL_VARIABLE).ok().as_deref().map(Kernel::parse) {
                Some(Ok(cap)) => best.min(cap),
                _ => best,
            }
        })
    }

    /// The fastest build this CPU supports.
    fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            if is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            return Kernel::Avx2;
        }
        Kernel::Portable
    }

    /// A level by its name in [`KERNEL_VARIABLE`]; a level this build has no code for is refused.
    pub(crate) fn parse(name: &str) -> Result<Kernel, &'static str> {
        match name {
            "portable" => Ok(Kernel::Portable),
            #[cfg(target_arch = "x86_64")]
            "avx2" => Ok(Kernel::Avx2),
            #[cfg(target_arch = "x86_64")]
            "avx512" => Ok(Kernel::Avx512),
            _ => Err(if cfg!(target_arch = "x86_64") { "portable, avx2 or avx512" } else { "portable" }),
        }
    }

    /// Every build this CPU can run, for tests that compare them.
    #[cfg(test)]
    pub(crate) fn all_available() -> Vec<Kernel> {
        let best = Kernel::best();
        let mut k = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        k.extend([Kernel::Avx2, Kernel::Avx512].into_iter().filter(|&l| l <= best));
        k
    }
}

/// A weight matrix `[rows, cols]` whose products are computed one weight row at a time.
pub(crate) trait RowDot: Sync {
    /// Weight rows: the product's output columns.
    fn rows(&self) -> usize;

    /// Weight row `j` against `R` activation rows, which are rows `first..first + R` of the
    /// product's input (for kernels that prepared something per activation row).
    fn dot<const R: usize>(&self, j: usize, first: usize, xs: [&[f32]; R]) -> [f32; R];
}

/// `x @ w^T`: `x` is `[m, k]` (`m` small), `w` is `[n, k]`; returns `[m, n]` row-major. Runs on
/// the current rayon pool.
pub(crate) fn matmul(x: &CpuTensor, w: &impl RowDot) -> Vec<f32> {
    let (m, n) = (x.rows, w.rows());
    let xs: Vec<&[f32]> = (0..m).map(|r| x.row(r)).collect();
    // Computed as [n, m] so every task owns a contiguous piece of the output.
    let mut by_weight_row = vec![0.0f32; n * m];
    by_weight_row.par_chunks_mut(ROWS_PER_TASK * m.max(1)).enumerate().for_each(|(task, out)| {
        for (i, o) in out.chunks_exact_mut(m).enumerate() {
            let j = task * ROWS_PER_TASK + i;
            for (g, (o, xs)) in o.chunks_mut(GROUP).zip(xs.chunks(GROUP)).enumerate() {
                let first = g * GROUP;
                match o.len() {
                    8 => o.copy_from_slice(&w.dot::<8>(j, first, xs.try_into().expect("8 rows"))),
                    7 => o.copy_from_slice(&w.dot::<7>(j, first, xs.try_into().expect("7 rows"))),
                    6 => o.copy_from_slice(&w.dot::<6>(j, first, xs.try_into().expect("6 rows"))),
                    5 => o.copy_from_slice(&w.dot::<5>(j, first, xs.try_into().expect("5 rows"))),
                    4 => o.copy_from_slice(&w.dot::<4>(j, first, xs.try_into().expect("4 rows"))),
                    3 => o.copy_from_slice(&w.dot::<3>(j, first, xs.try_into().expect("3 rows"))),
                    2 => o.copy_from_slice(&w.dot::<2>(j, first, xs.try_into().expect("2 rows"))),
                    _ => o.copy_from_slice(&w.dot::<1>(j, first, xs.try_into().expect("1 row"))),
                }
            }
        }
    });
    if m == 1 {
        return by_weight_row;
    }
    let mut out = vec![0.0f32; m * n];
    for (j, row) in by_weight_row.chunks_exact(m).enumerate() {
        for (r, &v) in row.iter().enumerate() {
            out[r * n + j] = v;
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Levels are named as the variable's documentation says, ordered, and nothing else is taken.
    #[test]
    fn kernel_levels_by_name() {
        assert_eq!(Kernel::parse("portable"), Ok(Kernel::Portable));
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(Kernel::parse("avx2"), Ok(Kernel::Avx2));
            assert_eq!(Kernel::parse("avx512"), Ok(Kernel::Avx512));
            assert!(Kernel::Portable < Kernel::Avx2 && Kernel::Avx2 < Kernel::Avx512);
        }
        for bad in ["", "AVX2", "sse", "avx-512"] {
            assert!(Kernel::parse(bad).is_err(), "{bad:?} was taken");
        }
        assert!(Kernel::all_available().contains(&Kernel::detect()));
    }

    /// For every build of a kernel and 1 to 9 activation rows of width `k`: `product(kernel, x)`
    /// equals the f64 product of `x` with `dense` (`[n, k]`, the weights as f32) within f32
    /// rounding, 1e-5 of the sum of the terms' magnitudes.
    pub(crate) fn check_products(
        n: usize,
        k: usize,
        dense: &[f32],
        product: impl Fn(Kernel, &CpuTensor) -> Vec<f32>,
        what: &str,
    ) {
        for m in 1..=9 {
            let xs: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 1.5).collect();
            let x = CpuTensor::new(xs, m, k);
            for kernel in Kernel::all_available() {
                let got = product(kernel, &x);
                for r in 0..m {
                    for j in 0..n {
                        let terms = (0..k).map(|i| f64::from(x.row(r)[i]) * f64::from(dense[j * k + i]));
                        let (want, scale) = terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()));
                        let diff = (f64::from(got[r * n + j]) - want).abs();
                        assert!(
                            diff <= 1e-5 * scale,
                            "{what} {kernel:?} m={m} [{r},{j}]: {} vs {want}",
                            got[r * n + j]
                        );
                    }
                }
            }
        }
    }
}

/// Helpers of the AVX2 kernels.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// Sum of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }
}
