//! Half-precision (f16, bf16) weight matrices kept in their 16 bits.
//!
//! A Hugging Face checkpoint is usually f16 or bf16: keeping it so halves the memory of its f32
//! copy and the bytes each decoded token reads. Products with a few activation rows widen the
//! weights in registers ([`crate::halfdot`]); larger products widen a panel of rows at a time for
//! the dense kernel. Widening is exact, so either way the values are the checkpoint's own.

use std::ops::Range;

use focusllm_core::{DType, HostTensor};
use rayon::prelude::*;

use crate::direct::Kernel;
use crate::halfdot;

/// An f16 or bf16 `[rows, cols]` weight matrix on the CPU, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HalfMatrix {
    /// `F16` or `BF16`.
    pub(crate) dtype: DType,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// The values' bits.
    pub(crate) bits: Vec<u16>,
}

impl HalfMatrix {
    /// The matrix in `t`; `None` unless `t` is an f16 or bf16 rank-2 tensor whose bytes match its
    /// shape.
    pub(crate) fn from_host(t: &HostTensor<'_>) -> Option<Self> {
        let &[rows, cols] = t.shape.as_slice() else { return None };
        if !matches!(t.dtype, DType::F16 | DType::BF16) || !t.has_consistent_size() {
            return None;
        }
        let bits = t.bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
        Some(HalfMatrix { dtype: t.dtype, rows, cols, bits })
    }

    /// Row `r`'s bits.
    #[inline]
    pub(crate) fn row(&self, r: usize) -> &[u16] {
        &self.bits[r * self.cols..(r + 1) * self.cols]
    }

    /// Writes rows `rows` widened to f32 to `out` (`rows.len() * cols` values), in parallel on
    /// the current rayon pool.
    pub(crate) fn widen_rows(&self, rows: Range<usize>, out: &mut [f32]) {
        debug_assert_eq!(out.len(), rows.len() * self.cols);
        let kernel = Kernel::detect();
        let src = &self.bits[rows.start * self.cols..rows.end * self.cols];
        out.par_chunks_mut(1 << 14)
            .zip(src.par_chunks(1 << 14))
            .for_each(|(o, s)| halfdot::widen(kernel, self.dtype, s, o));
    }

    /// Writes row `r` widened to f32 to `out` (`cols` values).
    pub(crate) fn widen_row(&self, r: usize, out: &mut [f32]) {
        halfdot::widen(Kernel::detect(), self.dtype, self.row(r), out);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `[rows, cols]` host tensor of `dtype` with values in [-1.5, 1.5), from a seed.
    pub(crate) fn random_half(dtype: DType, rows: usize, cols: usize, seed: u64) -> HostTensor<'static> {
        let mut state = seed;
        let mut bytes = Vec::with_capacity(rows * cols * 2);
        for _ in 0..rows * cols {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let x = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0;
            let b = if dtype == DType::F16 {
                half::f16::from_f32(x).to_le_bytes()
            } else {
                half::bf16::from_f32(x).to_le_bytes()
            };
            bytes.extend(b);
        }
        HostTensor { name: "w".into(), dtype, shape: vec![rows, cols], bytes: bytes.into() }
    }

    #[test]
    fn rows_widen_to_the_checkpoint_values() {
        for dtype in [DType::F16, DType::BF16] {
            let (rows, cols) = (6, 45);
            let t = random_half(dtype, rows, cols, 5);
            let m = HalfMatrix::from_host(&t).unwrap();
            let want = t.to_f32();
            let mut out = vec![0.0; 4 * cols];
            m.widen_rows(1..5, &mut out);
            assert_eq!(out, want[cols..5 * cols], "{dtype:?}");
            let mut row = vec![0.0; cols];
            m.widen_row(5, &mut row);
            assert_eq!(row, want[5 * cols..], "{dtype:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_half_matrix() {
        let t = |dtype, shape: Vec<usize>, n| HostTensor { name: "w".into(), dtype, shape, bytes: vec![0u8; n].into() };
        assert!(HalfMatrix::from_host(&t(DType::F32, vec![2, 3], 24)).is_none());
        assert!(HalfMatrix::from_host(&t(DType::F16, vec![6], 12)).is_none());
        assert!(HalfMatrix::from_host(&t(DType::BF16, vec![2, 3], 11)).is_none());
        assert!(HalfMatrix::from_host(&t(DType::BF16, vec![2, 3], 12)).is_some());
    }
}
