//! Block-quantised weight matrices (ggml's Q8_0, Q4_0, Q4_1) kept in their blocks.
//!
//! Decoding reads every weight once per token, so its speed is the bytes of weights read: a Q4_1
//! matrix is a sixth of its f32 copy. Products with a few activation rows therefore run on the
//! quants directly ([`crate::qdot`]); larger products dequantise a panel of weight rows at a time
//! (exactly as the file's format defines the values) and hand it to the dense kernel.

use std::ops::Range;

use focusllm_core::quant::{self, Block, BLOCK};
use focusllm_core::{DType, HostTensor};
use rayon::prelude::*;

/// A block-quantised `[rows, cols]` weight matrix on the CPU, repacked for the product kernels: the f16 scales (and Q4_1's
/// minimums) widened to f32 once at load, the quants of each row contiguous.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantMatrix {
    pub(crate) dtype: DType,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// `scales[r * blocks_per_row + b]`: the scale of block `b` of row `r`.
    pub(crate) scales: Vec<f32>,
    /// Q4_1's minimums, laid out as `scales`; empty for the other types.
    pub(crate) mins: Vec<f32>,
    /// The quants, [`QuantMatrix::quant_bytes`] per block, row-major.
    pub(crate) quants: Vec<u8>,
}

impl QuantMatrix {
    /// Repacks a quantised host matrix `[rows, cols]`; `None` unless `t` is a block-quantised
    /// rank-2 tensor whose rows are whole blocks and whose bytes match its shape.
    pub(crate) fn from_host(t: &HostTensor<'_>) -> Option<Self> {
        let &[rows, cols] = t.shape.as_slice() else { return None };
        if !t.dtype.is_quantized() || cols % BLOCK != 0 || !t.has_consistent_size() {
            return None;
        }
        let (_, block_bytes) = t.dtype.block();
        let blocks = rows * cols / BLOCK;
        let mut m = QuantMatrix {
            dtype: t.dtype,
            rows,
            cols,
            scales: Vec::with_capacity(blocks),
            mins: Vec::with_capacity(if t.dtype == DType::Q4_1 { blocks } else { 0 }),
            quants: Vec::with_capacity(blocks * quant_bytes(t.dtype)),
        };
        for raw in t.bytes.chunks_exact(block_bytes) {
            let block = quant::split_block(t.dtype, raw)?;
            m.scales.push(block.scale);
            if t.dtype == DType::Q4_1 {
                m.mins.push(block.min);
            }
            m.quants.extend_from_slice(block.quants);
        }
        Some(m)
    }

    /// Blocks in one row.
    pub(crate) fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// Bytes of quants per block: 32 for Q8_0, 16 for the 4-bit types.
    pub(crate) fn quant_bytes(&self) -> usize {
        quant_bytes(self.dtype)
    }

    /// Block `b` of row `r`.
    #[inline]
    pub(crate) fn block(&self, r: usize, b: usize) -> Block<'_> {
        let i = r * self.blocks_per_row() + b;
        let qb = self.quant_bytes();
        Block {
            scale: self.scales[i],
            min: self.mins.get(i).copied().unwrap_or(0.0),
            quants: &self.quants[i * qb..(i + 1) * qb],
        }
    }

    /// Writes rows `rows` dequantised to `out` (`rows.len() * cols` values), in parallel on the
    /// current rayon pool.
    pub(crate) fn dequantize_rows(&self, rows: Range<usize>, out: &mut [f32]) {
        debug_assert_eq!(out.len(), rows.len() * self.cols);
        let start = rows.start;
        out.par_chunks_mut(self.cols.max(1)).enumerate().for_each(|(i, row)| self.dequantize_row(start + i, row));
    }

    /// Writes row `r` dequantised to `out` (`cols` values).
    pub(crate) fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        for (b, o) in out.chunks_exact_mut(BLOCK).enumerate() {
            quant::dequantize_block(self.dtype, &self.block(r, b), o);
        }
    }
}

fn quant_bytes(dtype: DType) -> usize {
    if dtype == DType::Q8_0 {
        BLOCK
    } else {
        BLOCK / 2
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Random bytes of `rows * cols / 32` blocks of `dtype`, with finite f16 scales in [0.01, 0.05)
    /// and minimums in [-0.2, 0.2).
    pub(crate) fn random_blocks(dtype: DType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let f16 = |x: f32| half::f16::from_f32(x).to_le_bytes();
        let mut bytes = Vec::new();
        for _ in 0..rows * cols / BLOCK {
            bytes.extend(f16(0.01 + 0.04 * (next() % 1000) as f32 / 1000.0));
            if dtype == DType::Q4_1 {
                bytes.extend(f16(-0.2 + 0.4 * (next() % 1000) as f32 / 1000.0));
            }
            bytes.extend((0..quant_bytes(dtype)).map(|_| next() as u8));
        }
        bytes
    }

    #[test]
    fn repacked_rows_dequantise_as_the_file_format_defines() {
        for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
            let (rows, cols) = (5, 96);
            let bytes = random_blocks(dtype, rows, cols, 3);
            let t = HostTensor { name: "w".into(), dtype, shape: vec![rows, cols], bytes: bytes.into() };
            let m = QuantMatrix::from_host(&t).unwrap();
            let mut out = vec![0.0; 3 * cols];
            m.dequantize_rows(1..4, &mut out);
            let want = t.to_f32();
            assert_eq!(out, want[cols..4 * cols], "{dtype:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_whole_block_matrix() {
        let t = |dtype, shape: Vec<usize>, n| HostTensor { name: "w".into(), dtype, shape, bytes: vec![0u8; n].into() };
        assert!(QuantMatrix::from_host(&t(DType::F32, vec![1, 32], 128)).is_none());
        assert!(QuantMatrix::from_host(&t(DType::Q8_0, vec![32], 34)).is_none());
        assert!(QuantMatrix::from_host(&t(DType::Q8_0, vec![1, 32], 33)).is_none());
        assert!(QuantMatrix::from_host(&t(DType::Q4_1, vec![2, 16], 20)).is_none());
        assert!(QuantMatrix::from_host(&t(DType::Q4_1, vec![2, 32], 40)).is_some());
    }
}
