//! Element formats of host tensors and their conversion to f32: the dense F32, F16 and BF16, and
//! ggml's block-quantised Q8_0, Q4_0 and Q4_1 (blocks of [`BLOCK`] elements sharing an f16 scale).
//!
//! The arithmetic follows ggml (and Python's `gguf.quants`) operation for operation, so results
//! are bit-identical: the f16 scale is widened to f32 and multiplied by the quant in f32, and Q4_1's
//! minimum is added after the product (never fused).

use half::{bf16, f16};

/// Elements per block of the block-quantised types.
pub const BLOCK: usize = 32;

/// Element type of a tensor held on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// ggml's Q8_0: blocks of 32 signed bytes and an f16 scale (34 bytes).
    Q8_0,
    /// ggml's Q4_0: blocks of 32 nibbles offset by 8 and an f16 scale (18 bytes).
    Q4_0,
    /// ggml's Q4_1: blocks of 32 nibbles, an f16 scale and an f16 minimum (20 bytes).
    Q4_1,
}

impl DType {
    /// `(elements, bytes)` of one block: `(1, element size)` for the dense types.
    pub fn block(self) -> (usize, usize) {
        match self {
            DType::F32 => (1, 4),
            DType::F16 | DType::BF16 => (1, 2),
            DType::Q8_0 => (BLOCK, 34),
            DType::Q4_0 => (BLOCK, 18),
            DType::Q4_1 => (BLOCK, 20),
        }
    }

    /// Whether the type stores blocks of quants rather than one value per element.
    pub fn is_quantized(self) -> bool {
        self.block().0 > 1
    }

    /// Bytes that `elements` elements take, or `None` when they do not fill whole blocks.
    pub fn bytes_for(self, elements: usize) -> Option<usize> {
        let (block_elems, block_bytes) = self.block();
        elements.is_multiple_of(block_elems).then(|| elements / block_elems).and_then(|b| b.checked_mul(block_bytes))
    }
}

/// The f16 at byte `i` of `b`, widened to f32.
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// One block-quantised block, split into its parts.
#[derive(Debug, Clone, Copy)]
pub struct Block<'a> {
    /// The scale `d`.
    pub scale: f32,
    /// Q4_1's minimum `m` (0 for the other types).
    pub min: f32,
    /// The quants: 32 signed bytes for Q8_0; 16 bytes of two nibbles for Q4_0/Q4_1 (the low
    /// nibble of byte `i` is element `i`, the high nibble element `i + 16`).
    pub quants: &'a [u8],
}

/// Splits the bytes of one block of `dtype` (exactly `dtype.block().1` bytes) into its parts;
/// `None` for dense types.
pub fn split_block(dtype: DType, b: &[u8]) -> Option<Block<'_>> {
    match dtype {
        DType::Q8_0 => Some(Block { scale: f16_at(b, 0), min: 0.0, quants: &b[2..2 + BLOCK] }),
        DType::Q4_0 => Some(Block { scale: f16_at(b, 0), min: 0.0, quants: &b[2..2 + BLOCK / 2] }),
        DType::Q4_1 => Some(Block { scale: f16_at(b, 0), min: f16_at(b, 2), quants: &b[4..4 + BLOCK / 2] }),
        DType::F32 | DType::F16 | DType::BF16 => None,
    }
}

/// Writes the [`BLOCK`] values of one block of `dtype`, given as its parts, to `out` (which holds
/// [`BLOCK`] values).
///
/// # Panics
/// When `dtype` is a dense type (only [`split_block`]'s types have blocks) or `out` is shorter
/// than a block.
pub fn dequantize_block(dtype: DType, block: &Block<'_>, out: &mut [f32]) {
    let (d, m, qs) = (block.scale, block.min, block.quants);
    match dtype {
        DType::Q8_0 => {
            for (o, &q) in out.iter_mut().zip(qs) {
                *o = f32::from(q as i8) * d;
            }
        }
        DType::Q4_0 => {
            let (lo, hi) = out.split_at_mut(BLOCK / 2);
            for ((l, h), &q) in lo.iter_mut().zip(hi).zip(qs) {
                *l = d * f32::from((q & 0x0F) as i8 - 8);
                *h = d * f32::from((q >> 4) as i8 - 8);
            }
        }
        DType::Q4_1 => {
            let (lo, hi) = out.split_at_mut(BLOCK / 2);
            for ((l, h), &q) in lo.iter_mut().zip(hi).zip(qs) {
                *l = d * f32::from(q & 0x0F) + m;
                *h = d * f32::from(q >> 4) + m;
            }
        }
        DType::F32 | DType::F16 | DType::BF16 => unreachable!("dense types have no blocks"),
    }
}

/// Converts `data` (exactly `n` elements of `dtype`) to f32; `None` when `data` does not hold
/// exactly `n` elements.
pub fn dequantize(dtype: DType, data: &[u8], n: usize) -> Option<Vec<f32>> {
    if dtype.bytes_for(n) != Some(data.len()) {
        return None;
    }
    let out = match dtype {
        DType::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        DType::F16 => data.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        DType::BF16 => data.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        DType::Q8_0 | DType::Q4_0 | DType::Q4_1 => {
            let mut out = vec![0.0f32; n];
            let (_, block_bytes) = dtype.block();
            for (b, o) in data.chunks_exact(block_bytes).zip(out.chunks_exact_mut(BLOCK)) {
                let block = split_block(dtype, b).expect("a block type");
                dequantize_block(dtype, &block, o);
            }
            out
        }
    };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_and_q4_1_nibble_order() {
        // One block: d = 1.0 (f16 0x3C00), nibbles: low = i % 16, high = 15 - i % 16.
        let mut b = vec![0x00, 0x3C];
        b.extend((0..16u8).map(|i| i | ((15 - i) << 4)));
        let x = dequantize(DType::Q4_0, &b, 32).unwrap();
        assert_eq!(x[0], -8.0);
        assert_eq!(x[15], 7.0);
        assert_eq!(x[16], 7.0);
        assert_eq!(x[31], -8.0);
        let mut b1 = vec![0x00, 0x3C, 0x00, 0x40]; // d = 1, m = 2
        b1.extend((0..16u8).map(|i| i | ((15 - i) << 4)));
        let y = dequantize(DType::Q4_1, &b1, 32).unwrap();
        assert_eq!((y[0], y[15], y[16]), (2.0, 17.0, 17.0));
    }

    #[test]
    fn wrong_length_is_none() {
        assert!(dequantize(DType::Q8_0, &[0; 33], 32).is_none());
        assert!(dequantize(DType::F32, &[0; 8], 3).is_none());
        assert!(dequantize(DType::Q4_0, &[0; 18], 16).is_none());
        assert!(dequantize(DType::Q4_1, &[0; 20], 33).is_none());
    }
}
