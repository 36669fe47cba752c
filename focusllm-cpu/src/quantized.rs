//! Block-quantised weight matrices (every ggml block type core decodes) kept as small integers.
//!
//! Decoding reads every weight once per token, so its speed is the bytes of weights read: a Q4_1
//! matrix is a sixth of its f32 copy. Products with a few activation rows therefore run on the
//! quants directly ([`crate::qdot`]); larger products dequantise a panel of weight rows at a time
//! (exactly as the file's format defines the values) and hand it to the dense kernel.
//!
//! At load every block is decoded once ([`quant::decode_block`]) into groups of 16 or 32 elements
//! with an f32 scale (and offset), and the integers are packed in a layout the kernels read: two
//! nibbles per byte (Q4_0, Q4_1, Q4_K) or one signed byte per element (the others; a five-bit
//! layout of nibbles and a bit plane read less memory but decoded slower, its unpacking costing
//! more than the bytes saved).

use std::ops::Range;

use focusllm_core::quant::{self, BlockParts, BLOCK};
use focusllm_core::{DType, HostTensor};
use rayon::prelude::*;

/// How the integers of a matrix are packed, per [`BLOCK`] elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packing {
    /// One signed byte per element (32 bytes).
    Bytes,
    /// Integers 0..=15, two per byte: byte `i` holds element `i` in its low nibble and element
    /// `i + 16` in its high one (16 bytes).
    Nibbles,
    /// Integers -8..=7 stored as [`Packing::Nibbles`] of the integer plus 8.
    SignedNibbles,
}

impl Packing {
    /// The packing of `dtype`'s integers.
    fn of(dtype: DType) -> Packing {
        match dtype.quant_range() {
            r if *r.start() == 0 && *r.end() <= 15 => Packing::Nibbles,
            r if *r.start() == -8 && *r.end() == 7 => Packing::SignedNibbles,
            _ => Packing::Bytes,
        }
    }

    /// Bytes per [`BLOCK`] elements.
    pub(crate) fn bytes(self) -> usize {
        if self == Packing::Bytes {
            BLOCK
        } else {
            BLOCK / 2
        }
    }

    /// What is added to an integer before it is stored.
    fn bias(self) -> i8 {
        if self == Packing::SignedNibbles {
            8
        } else {
            0
        }
    }
}

/// A block-quantised `[rows, cols]` weight matrix on the CPU: the scales (and offsets) of its
/// groups in f32, the integers of each row contiguous in one [`Packing`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuantMatrix {
    pub(crate) dtype: DType,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) packing: Packing,
    /// Elements per group sharing a scale: 16 or 32.
    pub(crate) group: usize,
    /// `scales[r * groups_per_row + g]`: the scale of group `g` of row `r`.
    pub(crate) scales: Vec<f32>,
    /// The groups' offsets, laid out as `scales`; empty for the types without.
    pub(crate) offsets: Vec<f32>,
    /// The integers, [`Packing::bytes`] per [`BLOCK`] elements, row-major.
    pub(crate) quants: Vec<u8>,
}

impl QuantMatrix {
    /// Repacks a quantised host matrix `[rows, cols]`; `None` unless `t` is a block-quantised
    /// rank-2 tensor whose rows are whole blocks and whose bytes match its shape.
    pub(crate) fn from_host(t: &HostTensor<'_>) -> Option<Self> {
        let &[rows, cols] = t.shape.as_slice() else { return None };
        let (group, has_offsets) = t.dtype.groups()?;
        let (block_elems, block_bytes) = t.dtype.block();
        if cols % block_elems != 0 || !t.has_consistent_size() {
            return None;
        }
        let packing = Packing::of(t.dtype);
        let (elements, groups) = (rows * cols, rows * cols / group);
        let mut m = QuantMatrix {
            dtype: t.dtype,
            rows,
            cols,
            packing,
            group,
            scales: Vec::with_capacity(groups),
            offsets: Vec::with_capacity(if has_offsets { groups } else { 0 }),
            quants: Vec::with_capacity(elements / BLOCK * packing.bytes()),
        };
        let mut parts = BlockParts::default();
        for raw in t.bytes.chunks_exact(block_bytes) {
            if !quant::decode_block(t.dtype, raw, &mut parts) {
                return None;
            }
            m.scales.extend_from_slice(&parts.scales[..parts.group_count()]);
            if has_offsets {
                m.offsets.extend_from_slice(&parts.offsets[..parts.group_count()]);
            }
            for q in parts.quants[..parts.elements].chunks_exact(BLOCK) {
                if packing == Packing::Bytes {
                    m.quants.extend(q.iter().map(|&q| q as u8));
                    continue;
                }
                let mut stored = [0u8; BLOCK];
                for (s, &q) in stored.iter_mut().zip(q) {
                    *s = (q + packing.bias()) as u8;
                }
                let (lo, hi) = stored.split_at(BLOCK / 2);
                m.quants.extend(lo.iter().zip(hi).map(|(&l, &h)| l | (h << 4)));
            }
        }
        Some(m)
    }

    /// [`BLOCK`]-element pieces in one row.
    pub(crate) fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// Groups in one row.
    pub(crate) fn groups_per_row(&self) -> usize {
        self.cols / self.group
    }

    /// Bytes of integers per [`BLOCK`] elements.
    pub(crate) fn quant_bytes(&self) -> usize {
        self.packing.bytes()
    }

    /// The integers of piece `b` of row `r` ([`BLOCK`] elements).
    #[inline]
    pub(crate) fn integers(&self, r: usize, b: usize, out: &mut [i8; BLOCK]) {
        let qb = self.quant_bytes();
        let i = (r * self.blocks_per_row() + b) * qb;
        let bytes = &self.quants[i..i + qb];
        if self.packing == Packing::Bytes {
            for (o, &q) in out.iter_mut().zip(bytes) {
                *o = q as i8;
            }
            return;
        }
        let bias = self.packing.bias();
        for (i, &q) in bytes.iter().enumerate() {
            out[i] = (q & 0x0F) as i8 - bias;
            out[i + 16] = (q >> 4) as i8 - bias;
        }
    }

    /// Writes rows `rows` dequantised to `out` (`rows.len() * cols` values), in parallel on the
    /// current rayon pool.
    pub(crate) fn dequantize_rows(&self, rows: Range<usize>, out: &mut [f32]) {
        debug_assert_eq!(out.len(), rows.len() * self.cols);
        let start = rows.start;
        out.par_chunks_mut(self.cols.max(1)).enumerate().for_each(|(i, row)| self.dequantize_row(start + i, row));
    }

    /// Writes row `r` dequantised to `out` (`cols` values), with the arithmetic of
    /// [`BlockParts::values`].
    pub(crate) fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let mut q = [0i8; BLOCK];
        let mut g = r * self.groups_per_row();
        for (b, o) in out.chunks_exact_mut(BLOCK).enumerate() {
            self.integers(r, b, &mut q);
            for (o, q) in o.chunks_exact_mut(self.group).zip(q.chunks_exact(self.group)) {
                let s = self.scales[g];
                match self.offsets.get(g) {
                    Some(&m) => o.iter_mut().zip(q).for_each(|(o, &q)| *o = s * f32::from(q) + m),
                    None => o.iter_mut().zip(q).for_each(|(o, &q)| *o = s * f32::from(q)),
                }
                g += 1;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Random bytes of `rows * cols` elements of `dtype`: every quant bit pattern likely, f16
    /// scales small and positive, minimums within ±0.2 (scaled down for the 256-element types,
    /// whose group scales multiply these by up to 63).
    pub(crate) fn random_blocks(dtype: DType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let (elements, block_bytes) = dtype.block();
        let shrink = if elements > BLOCK { 32.0 } else { 1.0 };
        let mut bytes = Vec::new();
        for _ in 0..rows * cols / elements {
            let mut block: Vec<u8> = (0..block_bytes).map(|_| next() as u8).collect();
            for (k, &at) in dtype.f16_fields().iter().enumerate() {
                let u = (next() % 1000) as f32 / 1000.0;
                let x = if k == 0 { 0.01 + 0.04 * u } else { -0.2 + 0.4 * u } / shrink;
                block[at..at + 2].copy_from_slice(&half::f16::from_f32(x).to_le_bytes());
            }
            bytes.extend(block);
        }
        bytes
    }

    #[test]
    fn repacked_rows_dequantise_as_the_file_format_defines() {
        for dtype in DType::QUANTIZED {
            let (rows, cols) = (5, 512);
            let bytes = random_blocks(dtype, rows, cols, 3);
            let t = HostTensor { name: "w".into(), dtype, shape: vec![rows, cols], bytes: bytes.into() };
            let m = QuantMatrix::from_host(&t).unwrap();
            let mut out = vec![0.0; 3 * cols];
            m.dequantize_rows(1..4, &mut out);
            let want = t.to_f32();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&out), bits(&want[cols..4 * cols]), "{dtype:?}");
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
        assert!(QuantMatrix::from_host(&t(DType::Q4_K, vec![2, 128], 144)).is_none());
        assert!(QuantMatrix::from_host(&t(DType::Q4_K, vec![1, 256], 144)).is_some());
    }
}
