//! Softmax of one row of attention scores, vectorised.
//!
//! libm's scalar `expf` would be a large share of a long prefill; this `exp` is plain
//! arithmetic (range reduction, a degree-7 polynomial, the exponent put in by bits) that the
//! compiler vectorises, built once for the baseline and once for AVX2+FMA (with fused
//! multiply-adds there), chosen at run time like the product kernels ([`Kernel::detect`]).

use crate::direct::Kernel;

/// Values per step: two AVX registers of f32, so two independent polynomial chains overlap.
const LANES: usize = 16;

/// Turns `row` into `softmax(row)` in place. An empty row stays empty.
pub(crate) fn softmax(row: &mut [f32]) {
    softmax_with(Kernel::detect(), row);
}

/// [`softmax`] with a chosen build.
fn softmax_with(kernel: Kernel, row: &mut [f32]) {
    match kernel {
        Kernel::Portable => softmax_body::<false>(row),
        // SAFETY: the CPU has AVX2 and FMA (checked in `Kernel::detect`; AVX-512 implies them there).
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx512 => unsafe { softmax_avx2(row) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_avx2(row: &mut [f32]) {
    softmax_body::<true>(row);
}

/// The softmax, with fused multiply-adds in `exp` when `FMA` (only in a build for a CPU that
/// has them: elsewhere `mul_add` is a slow library call).
#[inline(always)]
fn softmax_body<const FMA: bool>(row: &mut [f32]) {
    if row.is_empty() {
        return;
    }
    let max = max(row);
    let mut sums = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (x, s) in chunk.iter_mut().zip(sums.iter_mut()) {
            *x = exp::<FMA>(*x - max);
            *s += *x;
        }
    }
    let mut total: f32 = sums.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp::<FMA>(*x - max);
        total += *x;
    }
    let inv = 1.0 / total;
    row.iter_mut().for_each(|x| *x *= inv);
}

/// The largest value of a non-empty row, in lanes (a plain `fold(f32::max)` stays scalar).
#[inline(always)]
fn max(row: &[f32]) -> f32 {
    let mut lanes = [row[0]; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = if x > *m { x } else { *m };
        }
    }
    let tail = chunks.remainder().iter().copied();
    lanes.into_iter().chain(tail).fold(f32::NEG_INFINITY, f32::max)
}

/// `a * b + c`, fused (one rounding) when `FMA`.
#[inline(always)]
fn mul_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `e^x` for `x <= 0` (scores minus their maximum), within a few ulp of the exact value; below
/// `-87.3` it returns about `1e-38` instead of a denormal or zero, which no softmax sum can see.
#[inline(always)]
fn exp<const FMA: bool>(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that `n * LN2_HI` is exact for every |n| < 2^10.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to an integer in the low mantissa bits, without a rounding call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.336_54); // keeps 2^n a normal number (n >= -126)
    let t = mul_add::<FMA>(x, LOG2_E, ROUND);
    let n = t - ROUND;
    let r = mul_add::<FMA>(-n, LN2_LO, mul_add::<FMA>(-n, LN2_HI, x)); // |r| <= ln2 / 2
                                                                       // e^r by its Taylor series to r^7 (truncation error below 1e-8 relative on |r| <= 0.347).
    let p = 1.0 / 5040.0;
    let p = mul_add::<FMA>(p, r, 1.0 / 720.0);
    let p = mul_add::<FMA>(p, r, 1.0 / 120.0);
    let p = mul_add::<FMA>(p, r, 1.0 / 24.0);
    let p = mul_add::<FMA>(p, r, 1.0 / 6.0);
    let p = mul_add::<FMA>(p, r, 0.5);
    let p = mul_add::<FMA>(p, r, 1.0);
    let p = mul_add::<FMA>(p, r, 1.0);
    let n = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32; // the integer n, from t's bits
    let scale = f32::from_bits(((n + 127) as u32) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_exp(exp: impl Fn(f32) -> f32, build: &str) {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let exact = (x as f64).exp();
            let rel = ((exp(x) as f64) - exact).abs() / exact;
            worst = worst.max(rel);
        }
        assert!(worst < 4.0 * f32::EPSILON as f64, "{build}: worst relative error {worst:e}");
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0, "{build}");
        assert_eq!(exp(0.0), 1.0, "{build}");
    }

    #[test]
    fn exp_is_within_a_few_ulp_of_f64_with_and_without_fma() {
        check_exp(exp::<false>, "separate multiply and add");
        // `mul_add` is exact fused arithmetic on every CPU (a library call without FMA).
        check_exp(exp::<true>, "fused multiply-add");
    }

    #[test]
    fn softmax_matches_f64_on_every_length_and_both_builds() {
        for len in [1usize, 2, 7, 8, 9, 31, 100, 1000] {
            let row: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.37).collect();
            let max = row.iter().copied().fold(f64::NEG_INFINITY, |m, x| m.max(x as f64));
            let total: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            let expected: Vec<f64> = row.iter().map(|&x| (x as f64 - max).exp() / total).collect();
            for kernel in Kernel::all_available() {
                let mut got = row.clone();
                softmax_with(kernel, &mut got);
                for (g, e) in got.iter().zip(&expected) {
                    assert!((*g as f64 - e).abs() <= 1e-5 * e + 1e-9, "{kernel:?} len {len}: {g} vs {e}");
                }
            }
        }
        let mut empty: [f32; 0] = [];
        softmax(&mut empty);
    }
}
