//! Attention of a few query rows (decoding, and the refreshes of cached chunks), for one or more
//! query heads sharing a key head: dot products and weighted sums straight over the strided keys
//! and values, where a `gemm` call's set-up costs more than its arithmetic. Built for the
//! baseline, AVX2+FMA and AVX-512 F, chosen at run time like the product kernels
//! ([`Kernel::detect`]).

use crate::direct::Kernel;
use crate::softmax::softmax;

/// Query rows up to which a block of rows takes this path rather than `gemm`.
pub(crate) const MAX_ROWS: usize = 8;

/// Keys scored together: independent accumulators, so the additions overlap.
const KEYS: usize = 4;

/// Keys whose keys (then values) stay in the L1 cache while every query of the task uses them.
const KEY_BLOCK: usize = 64;

/// The operands of one task: a few query rows of one sequence, for one or more query heads that
/// share one key head.
pub(crate) struct Rows<'a> {
    /// The queries: row `i` of head `h` is `q[i * q_stride + h * head_dim..][..head_dim]`.
    pub q: &'a [f32],
    /// Distance between query rows.
    pub q_stride: usize,
    /// Query heads (consecutive in a row) that read these keys.
    pub heads: usize,
    /// The sequence's keys for the head: key `j` is `k[j * kv_stride..][..head_dim]`.
    pub k: &'a [f32],
    /// The sequence's values, laid out as the keys.
    pub v: &'a [f32],
    /// Distance between key (and value) rows.
    pub kv_stride: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// Query rows.
    pub rows: usize,
    /// Keys the first row sees, less one: row `i` sees keys `0..=offset + i`.
    pub offset: usize,
    /// The scores' scale (typically `1 / sqrt(head_dim)`).
    pub scale: f32,
    /// With `Some(w)`, row `i` sees only the last `w` of its keys.
    pub window: Option<usize>,
}

/// Hands the attention output of row `i`, head `h` of `ops` to `write(i, h, row)` (`head_dim`
/// values), using `scratch` for the scores and the outputs.
pub(crate) fn attend(ops: &Rows<'_>, scratch: &mut Vec<f32>, write: impl FnMut(usize, usize, &[f32])) {
    attend_with(Kernel::detect(), ops, scratch, write);
}

/// [`attend`] with a chosen build.
fn attend_with(kernel: Kernel, ops: &Rows<'_>, scratch: &mut Vec<f32>, mut write: impl FnMut(usize, usize, &[f32])) {
    let (hd, keys) = (ops.head_dim, ops.offset + ops.rows);
    if ops.rows == 0 || ops.heads == 0 {
        return;
    }
    assert!(
        ops.q.len() >= (ops.rows - 1) * ops.q_stride + ops.heads * hd
            && ops.k.len() >= (keys - 1) * ops.kv_stride + hd
            && ops.v.len() >= (keys - 1) * ops.kv_stride + hd,
        "attention operands out of range"
    );
    let queries = ops.rows * ops.heads;
    scratch.clear();
    scratch.resize(queries * (keys + hd), 0.0);
    let (scores, out) = scratch.split_at_mut(queries * keys);
    match kernel {
        Kernel::Portable => body::<PORTABLE>(ops, scores, out),
        // SAFETY: the CPU has AVX2 and FMA (checked in `Kernel::detect`); operands checked above.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { body_avx2(ops, scores, out) },
        // SAFETY: the CPU has AVX-512 F, AVX2 and FMA (checked in `Kernel::detect`); as above.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { body_avx512(ops, scores, out) },
    }
    for (n, row) in out.chunks_exact(hd).enumerate() {
        write(n / ops.heads, n % ops.heads, row);
    }
}

/// The builds, as the body's const parameter.
const PORTABLE: u8 = 0;
const AVX2: u8 = 1;
const AVX512: u8 = 2;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn body_avx2(ops: &Rows<'_>, scores: &mut [f32], out: &mut [f32]) {
    body::<AVX2>(ops, scores, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn body_avx512(ops: &Rows<'_>, scores: &mut [f32], out: &mut [f32]) {
    body::<AVX512>(ops, scores, out);
}

/// `a * b + c`, fused where `fma` (only in a build for a CPU that has it: elsewhere `mul_add` is a
/// slow library call); always a constant, so the branch folds away.
#[inline(always)]
fn madd(fma: bool, a: f32, b: f32, c: f32) -> f32 {
    if fma {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Every query `n` (row `n / heads`, head `n % heads`): its scores over the keys into
/// `scores[n * keys..]`, their softmax over the keys it sees (the rest zero), then the weighted sum
/// of values into `out[n * head_dim..]` (zeroed). Keys, then values, are read a block at a time for
/// all the queries, so each is read from memory once.
#[inline(always)]
fn body<const L: u8>(ops: &Rows<'_>, scores: &mut [f32], out: &mut [f32]) {
    const { assert!(L <= AVX512) };
    let (hd, keys, heads) = (ops.head_dim, ops.offset + ops.rows, ops.heads);
    let query = |n: usize| &ops.q[(n / heads) * ops.q_stride + (n % heads) * hd..][..hd];
    for block in (0..keys).step_by(KEY_BLOCK) {
        let end = (block + KEY_BLOCK).min(keys);
        for (n, scores) in scores.chunks_exact_mut(keys).enumerate() {
            let (q, scores) = (query(n), &mut scores[block..end]);
            #[cfg(target_arch = "x86_64")]
            if L == AVX512 && hd % <simd::Avx512 as simd::Lanes>::N == 0 {
                // SAFETY: this build runs only on a CPU with AVX-512 F (see `attend_with`); the
                // head width is whole vectors and every key lies inside `ops.k` (checked there).
                unsafe { simd::scores::<simd::Avx512>(q, ops, block, scores) };
            } else if L >= AVX2 && hd % <simd::Avx2 as simd::Lanes>::N == 0 {
                // SAFETY: as above, for AVX2 and FMA.
                unsafe { simd::scores::<simd::Avx2>(q, ops, block, scores) };
            } else {
                portable_scores(L != PORTABLE, q, ops, block, scores);
            }
            #[cfg(not(target_arch = "x86_64"))]
            portable_scores(false, q, ops, block, scores);
        }
    }
    for (n, scores) in scores.chunks_exact_mut(keys).enumerate() {
        let visible = ops.offset + n / heads + 1;
        let from = ops.window.map_or(0, |w| visible.saturating_sub(w));
        softmax(&mut scores[from..visible]);
        scores[..from].fill(0.0);
        scores[visible..].fill(0.0);
    }
    for block in (0..keys).step_by(KEY_BLOCK) {
        let end = (block + KEY_BLOCK).min(keys);
        for (scores, o) in scores.chunks_exact(keys).zip(out.chunks_exact_mut(hd)) {
            let p = &scores[block..end];
            #[cfg(target_arch = "x86_64")]
            if L == AVX512 && hd % simd::tile::<simd::Avx512>() == 0 {
                // SAFETY: as for the scores, for the values.
                unsafe { simd::weighted::<simd::Avx512>(p, ops, block, o) };
            } else if L >= AVX2 && hd % simd::tile::<simd::Avx2>() == 0 {
                // SAFETY: as above.
                unsafe { simd::weighted::<simd::Avx2>(p, ops, block, o) };
            } else {
                portable_weighted(L != PORTABLE, p, ops, block, o);
            }
            #[cfg(not(target_arch = "x86_64"))]
            portable_weighted(false, p, ops, block, o);
        }
    }
}

/// `o += sum_i p[i] * v[from + i]`.
#[inline(always)]
fn portable_weighted(fma: bool, p: &[f32], ops: &Rows<'_>, from: usize, o: &mut [f32]) {
    let hd = o.len();
    for (j, &p) in p.iter().enumerate() {
        for (o, &v) in o.iter_mut().zip(&ops.v[(from + j) * ops.kv_stride..][..hd]) {
            *o = madd(fma, p, v, *o);
        }
    }
}

/// `scores[i] = scale * q . k[from + i]` for every `i < scores.len()`.
#[inline(always)]
fn portable_scores(fma: bool, q: &[f32], ops: &Rows<'_>, from: usize, scores: &mut [f32]) {
    for (j, s) in scores.iter_mut().enumerate() {
        let k = &ops.k[(from + j) * ops.kv_stride..][..q.len()];
        *s = ops.scale * q.iter().zip(k).fold(0.0, |a, (&x, &y)| madd(fma, x, y, a));
    }
}

/// The vector kernels, written once over [`Lanes`] and built for AVX2 and for AVX-512.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::{Rows, KEYS};

    /// The operations the kernels use, on one register width of f32.
    ///
    /// # Safety
    /// Every method needs the CPU features of its implementation; the kernels are only inlined into
    /// functions built for them.
    pub(super) trait Lanes {
        /// One register.
        type V: Copy;
        /// f32 lanes of a register.
        const N: usize;
        /// Every lane zero.
        unsafe fn zero() -> Self::V;
        /// Every lane `x`.
        unsafe fn splat(x: f32) -> Self::V;
        /// `N` values from `p` (unaligned).
        unsafe fn load(p: *const f32) -> Self::V;
        /// `N` values to `p` (unaligned).
        unsafe fn store(p: *mut f32, v: Self::V);
        /// `a * b + c`, fused.
        unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
        /// The sum of the lanes.
        unsafe fn sum(v: Self::V) -> f32;
    }

    /// AVX2 with FMA: eight lanes.
    pub(super) struct Avx2;

    impl Lanes for Avx2 {
        type V = __m256;
        const N: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn sum(v: __m256) -> f32 {
            crate::direct::avx2::hsum(v)
        }
    }

    /// AVX-512 F: sixteen lanes.
    pub(super) struct Avx512;

    impl Lanes for Avx512 {
        type V = __m512;
        const N: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn sum(v: __m512) -> f32 {
            _mm512_reduce_add_ps(v)
        }
    }

    /// `scores[i] = scale * q . k[from + i]` for every `i < scores.len()`, [`KEYS`] keys at a time.
    ///
    /// # Safety
    /// The CPU has `S`'s features; `q.len()` is a multiple of `S::N`; key `from + scores.len() - 1`
    /// (and so every earlier one) lies inside `ops.k`.
    #[inline(always)]
    pub(super) unsafe fn scores<S: Lanes>(q: &[f32], ops: &Rows<'_>, from: usize, scores: &mut [f32]) {
        let (hd, stride) = (q.len(), ops.kv_stride);
        let (qp, kp) = (q.as_ptr(), ops.k.as_ptr().add(from * stride));
        let n = scores.len();
        let mut j = 0;
        while j + KEYS <= n {
            let mut acc = [S::zero(); KEYS];
            for c in (0..hd).step_by(S::N) {
                // c + S::N <= hd: inside the query row and inside keys j..j + KEYS.
                let x = S::load(qp.add(c));
                for (key, a) in acc.iter_mut().enumerate() {
                    *a = S::fmadd(x, S::load(kp.add((j + key) * stride + c)), *a);
                }
            }
            for (key, a) in acc.into_iter().enumerate() {
                scores[j + key] = ops.scale * S::sum(a);
            }
            j += KEYS;
        }
        for (j, s) in scores.iter_mut().enumerate().skip(j) {
            let mut a = S::zero();
            for c in (0..hd).step_by(S::N) {
                a = S::fmadd(S::load(qp.add(c)), S::load(kp.add(j * stride + c)), a);
            }
            *s = ops.scale * S::sum(a);
        }
    }

    /// Registers of accumulators per tile of the weighted sum.
    const TILE_REGISTERS: usize = 4;

    /// Values per tile of the weighted sum with `S`.
    pub(super) const fn tile<S: Lanes>() -> usize {
        TILE_REGISTERS * S::N
    }

    /// `o += sum_i p[i] * v[from + i]`, a tile of `o` at a time in registers.
    ///
    /// # Safety
    /// The CPU has `S`'s features; `o.len()` is a multiple of [`tile`]; value `from + p.len() - 1`
    /// (and so every earlier one) lies inside `ops.v`.
    #[inline(always)]
    pub(super) unsafe fn weighted<S: Lanes>(p: &[f32], ops: &Rows<'_>, from: usize, o: &mut [f32]) {
        let vp = ops.v.as_ptr().add(from * ops.kv_stride);
        for t in (0..o.len()).step_by(tile::<S>()) {
            let mut acc: [S::V; TILE_REGISTERS] = std::array::from_fn(|i| S::load(o.as_ptr().add(t + i * S::N)));
            for (j, &p) in p.iter().enumerate() {
                let (p, v) = (S::splat(p), vp.add(j * ops.kv_stride + t));
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = S::fmadd(p, S::load(v.add(i * S::N)), *a);
                }
            }
            for (i, a) in acc.into_iter().enumerate() {
                S::store(o.as_mut_ptr().add(t + i * S::N), a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every build against an f64 evaluation of the same attention, over head widths with and
    /// without a remainder of the lanes, key counts with and without a remainder of the key groups
    /// and blocks, several query heads per key head, and strided rows.
    #[test]
    fn every_build_matches_f64() {
        // (rows, offset, head width, query heads, key row stride, window)
        for (rows, offset, hd, heads, kv_stride, window) in [
            (1, 0, 64, 1, 192, None),
            (2, 769, 64, 3, 192, None),
            (3, 10, 20, 2, 41, None),
            (8, 130, 128, 1, 128, None),
            (5, 64, 16, 4, 16, None),
            (4, 100, 16, 2, 32, Some(7)),
            (1, 300, 64, 1, 64, Some(256)),
            (3, 2, 16, 1, 16, Some(4)),
        ] {
            let (keys, q_stride) = (offset + rows, heads * hd + 7);
            let val = |i: usize, m: usize| ((i * m % 997) as f32 / 498.5 - 1.0) * 2.0;
            let q: Vec<f32> = (0..rows * q_stride).map(|i| val(i, 31)).collect();
            let k: Vec<f32> = (0..keys * kv_stride).map(|i| val(i, 17)).collect();
            let v: Vec<f32> = (0..keys * kv_stride).map(|i| val(i, 13)).collect();
            let scale = 1.0 / (hd as f32).sqrt();
            let ops =
                Rows { q: &q, q_stride, heads, k: &k, v: &v, kv_stride, head_dim: hd, rows, offset, scale, window };
            let mut want = vec![0.0f64; rows * heads * hd];
            for i in 0..rows {
                for h in 0..heads {
                    let qi = &q[i * q_stride + h * hd..][..hd];
                    let from = window.map_or(0, |w: usize| (offset + i + 1).saturating_sub(w));
                    let s: Vec<f64> = (from..=offset + i)
                        .map(|j| qi.iter().zip(&k[j * kv_stride..]).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum())
                        .map(|s: f64| s * f64::from(scale))
                        .collect();
                    let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = s.iter().map(|s| (s - max).exp()).sum();
                    for (j, s) in s.iter().enumerate().map(|(j, s)| (j + from, s)) {
                        for c in 0..hd {
                            want[(i * heads + h) * hd + c] += (s - max).exp() / z * f64::from(v[j * kv_stride + c]);
                        }
                    }
                }
            }
            for kernel in Kernel::all_available() {
                let mut out = vec![0.0f32; rows * heads * hd];
                attend_with(kernel, &ops, &mut Vec::new(), |i, h, row| {
                    out[(i * heads + h) * hd..][..hd].copy_from_slice(row)
                });
                for (g, w) in out.iter().zip(&want) {
                    assert!(
                        (f64::from(*g) - w).abs() < 1e-5,
                        "{kernel:?} rows={rows} hd={hd} heads={heads}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
