//! Element formats of host tensors and their conversion to f32: the dense F32, F16 and BF16, and
//! ggml's block-quantised types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, the K-quants Q2_K to Q6_K, IQ4_NL
//! and IQ4_XS).
//!
//! Every block type is decoded here, once, into [`BlockParts`]: groups of 16 or 32 elements that
//! share an f32 scale (and, for some types, an f32 offset), with one small integer per element.
//! The value of an element is `scale * q`, plus the offset where the type has one, computed in f32
//! in that order and never fused, which is exactly how ggml (and Python's `gguf.quants`) define the
//! values, so results are bit-identical. Backends build their own layouts from these parts.

use half::{bf16, f16};

/// Elements per block of the 32-element block types (and per group of the widest groups).
pub const BLOCK: usize = 32;

/// Elements per block of the K-quants and IQ4_XS.
pub const SUPER_BLOCK: usize = 256;

/// Most groups one block holds (Q2_K, Q3_K and Q6_K: 16 groups of 16).
pub const MAX_GROUPS: usize = SUPER_BLOCK / 16;

/// IQ4_NL's and IQ4_XS's sixteen non-linear levels, indexed by the stored nibble.
pub const IQ4_LEVELS: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// Element type of a tensor held on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
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
    /// ggml's Q5_0: blocks of 32 five-bit quants offset by 16 and an f16 scale (22 bytes).
    Q5_0,
    /// ggml's Q5_1: blocks of 32 five-bit quants, an f16 scale and an f16 minimum (24 bytes).
    Q5_1,
    /// ggml's Q2_K: 256 two-bit quants in 16 groups with 4-bit scales and minimums (84 bytes).
    Q2_K,
    /// ggml's Q3_K: 256 three-bit quants in 16 groups with 6-bit scales (110 bytes).
    Q3_K,
    /// ggml's Q4_K: 256 nibbles in 8 groups with 6-bit scales and minimums (144 bytes).
    Q4_K,
    /// ggml's Q5_K: 256 five-bit quants in 8 groups with 6-bit scales and minimums (176 bytes).
    Q5_K,
    /// ggml's Q6_K: 256 six-bit quants in 16 groups with 8-bit scales (210 bytes).
    Q6_K,
    /// ggml's IQ4_NL: blocks of 32 nibbles indexing [`IQ4_LEVELS`] and an f16 scale (18 bytes).
    IQ4_NL,
    /// ggml's IQ4_XS: 256 nibbles indexing [`IQ4_LEVELS`] in 8 groups with 6-bit scales (136 bytes).
    IQ4_XS,
}

impl DType {
    /// Every block-quantised type, in ggml's numbering order.
    pub const QUANTIZED: [DType; 12] = [
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
        DType::Q2_K,
        DType::Q3_K,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
        DType::IQ4_NL,
        DType::IQ4_XS,
    ];

    /// `(elements, bytes)` of one block: `(1, element size)` for the dense types.
    pub fn block(self) -> (usize, usize) {
        match self {
            DType::F32 => (1, 4),
            DType::F16 | DType::BF16 => (1, 2),
            DType::Q8_0 => (BLOCK, 34),
            DType::Q4_0 | DType::IQ4_NL => (BLOCK, 18),
            DType::Q4_1 => (BLOCK, 20),
            DType::Q5_0 => (BLOCK, 22),
            DType::Q5_1 => (BLOCK, 24),
            DType::Q2_K => (SUPER_BLOCK, 84),
            DType::Q3_K => (SUPER_BLOCK, 110),
            DType::Q4_K => (SUPER_BLOCK, 144),
            DType::Q5_K => (SUPER_BLOCK, 176),
            DType::Q6_K => (SUPER_BLOCK, 210),
            DType::IQ4_XS => (SUPER_BLOCK, 136),
        }
    }

    /// Elements per group sharing a scale (16 or 32), and whether the groups have offsets; `None`
    /// for the dense types.
    pub fn groups(self) -> Option<(usize, bool)> {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => None,
            DType::Q8_0 | DType::Q4_0 | DType::Q5_0 | DType::IQ4_NL | DType::IQ4_XS => Some((BLOCK, false)),
            DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => Some((BLOCK, true)),
            DType::Q3_K | DType::Q6_K => Some((16, false)),
            DType::Q2_K => Some((16, true)),
        }
    }

    /// The range of the integers [`decode_block`] gives for the type.
    pub fn quant_range(self) -> std::ops::RangeInclusive<i8> {
        match self {
            DType::Q8_0 => -128..=127,
            DType::Q4_0 => -8..=7,
            DType::Q4_1 | DType::Q4_K => 0..=15,
            DType::Q5_0 => -16..=15,
            DType::Q5_1 | DType::Q5_K => 0..=31,
            DType::Q2_K => 0..=3,
            DType::Q3_K => -4..=3,
            DType::Q6_K => -32..=31,
            DType::IQ4_NL | DType::IQ4_XS => -127..=113,
            DType::F32 | DType::F16 | DType::BF16 => 0..=0,
        }
    }

    /// Byte offsets of the f16 fields (scales, minimums) within one block, so that tests and fuzz
    /// seeds can write valid random blocks; empty for the dense types.
    pub fn f16_fields(self) -> &'static [usize] {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => &[],
            DType::Q8_0 | DType::Q4_0 | DType::Q5_0 | DType::IQ4_NL | DType::IQ4_XS => &[0],
            DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
            DType::Q2_K => &[80, 82],
            DType::Q3_K => &[108],
            DType::Q6_K => &[208],
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

/// One block decoded into groups: element `i` is `scales[i / group] * quants[i]`, plus
/// `offsets[i / group]` when `has_offsets` (see the module doc for the exact arithmetic).
#[derive(Debug, Clone, PartialEq)]
pub struct BlockParts {
    /// Elements of the block (32 or 256).
    pub elements: usize,
    /// Elements per group (16 or 32).
    pub group: usize,
    /// Whether the groups have offsets (the types with minimums).
    pub has_offsets: bool,
    /// The groups' scales; `elements / group` of them are used.
    pub scales: [f32; MAX_GROUPS],
    /// The groups' offsets (minimums, with their sign), when `has_offsets`.
    pub offsets: [f32; MAX_GROUPS],
    /// The integers of the elements; `elements` of them are used.
    pub quants: [i8; SUPER_BLOCK],
}

impl Default for BlockParts {
    fn default() -> Self {
        BlockParts {
            elements: 0,
            group: BLOCK,
            has_offsets: false,
            scales: [0.0; MAX_GROUPS],
            offsets: [0.0; MAX_GROUPS],
            quants: [0; SUPER_BLOCK],
        }
    }
}

impl BlockParts {
    /// Groups of the block.
    pub fn group_count(&self) -> usize {
        self.elements / self.group
    }

    /// Writes the block's values to `out` (`elements` values).
    pub fn values(&self, out: &mut [f32]) {
        for (g, o) in out[..self.elements].chunks_exact_mut(self.group).enumerate() {
            let (s, m) = (self.scales[g], self.offsets[g]);
            let q = &self.quants[g * self.group..(g + 1) * self.group];
            if self.has_offsets {
                for (o, &q) in o.iter_mut().zip(q) {
                    *o = s * f32::from(q) + m;
                }
            } else {
                for (o, &q) in o.iter_mut().zip(q) {
                    *o = s * f32::from(q);
                }
            }
        }
    }
}

/// The f16 at byte `i` of `b`, widened to f32.
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Q4_K's and Q5_K's packing of eight 6-bit scales and eight 6-bit minimums in 12 bytes.
fn k_scale_min(s: &[u8], g: usize) -> (u8, u8) {
    if g < 4 {
        (s[g] & 0x3F, s[g + 4] & 0x3F)
    } else {
        ((s[g + 4] & 0x0F) | ((s[g - 4] >> 6) << 4), (s[g + 4] >> 4) | ((s[g] >> 6) << 4))
    }
}

/// Decodes one block of `dtype` (exactly `dtype.block().1` bytes of `b`) into `parts`; `false`
/// (and `parts` untouched) for a dense type or a slice of the wrong length.
pub fn decode_block(dtype: DType, b: &[u8], parts: &mut BlockParts) -> bool {
    let Some((group, has_offsets)) = dtype.groups() else { return false };
    let (elements, bytes) = dtype.block();
    if b.len() != bytes {
        return false;
    }
    parts.elements = elements;
    parts.group = group;
    parts.has_offsets = has_offsets;
    let (sc, off, q) = (&mut parts.scales, &mut parts.offsets, &mut parts.quants);
    match dtype {
        DType::Q8_0 => {
            sc[0] = f16_at(b, 0);
            for (q, &x) in q.iter_mut().zip(&b[2..34]) {
                *q = x as i8;
            }
        }
        DType::Q4_0 | DType::Q4_1 | DType::IQ4_NL => {
            let header = if dtype == DType::Q4_1 { 4 } else { 2 };
            sc[0] = f16_at(b, 0);
            if dtype == DType::Q4_1 {
                off[0] = f16_at(b, 2);
            }
            // Byte i holds element i in its low nibble and element i + 16 in its high one.
            for (i, &x) in b[header..header + 16].iter().enumerate() {
                let (lo, hi) = (x & 0x0F, x >> 4);
                (q[i], q[i + 16]) = match dtype {
                    DType::Q4_0 => (lo as i8 - 8, hi as i8 - 8),
                    DType::Q4_1 => (lo as i8, hi as i8),
                    _ => (IQ4_LEVELS[lo as usize], IQ4_LEVELS[hi as usize]),
                };
            }
        }
        DType::Q5_0 | DType::Q5_1 => {
            let header = if dtype == DType::Q5_1 { 4 } else { 2 };
            sc[0] = f16_at(b, 0);
            if dtype == DType::Q5_1 {
                off[0] = f16_at(b, 2);
            }
            let high = u32::from_le_bytes([b[header], b[header + 1], b[header + 2], b[header + 3]]);
            let bias = if dtype == DType::Q5_0 { 16 } else { 0 };
            for (i, &x) in b[header + 4..header + 20].iter().enumerate() {
                let h = |e: usize| (((high >> e) & 1) << 4) as u8;
                q[i] = ((x & 0x0F) | h(i)) as i8 - bias;
                q[i + 16] = ((x >> 4) | h(i + 16)) as i8 - bias;
            }
        }
        DType::Q2_K => {
            let (scales, qs) = (&b[0..16], &b[16..80]);
            let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
            for g in 0..16 {
                sc[g] = d * f32::from(scales[g] & 0x0F);
                off[g] = -(dmin * f32::from(scales[g] >> 4));
            }
            // Element e: byte (e / 128) * 32 + e % 32, bits 2 * ((e % 128) / 32).
            for (e, q) in q.iter_mut().enumerate() {
                *q = ((qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3) as i8;
            }
        }
        DType::Q3_K => {
            let (hmask, qs, scales) = (&b[0..32], &b[32..96], &b[96..108]);
            let d = f16_at(b, 108);
            for g in 0..16 {
                let low = (scales[g % 8] >> (4 * (g / 8))) & 0x0F;
                let high = (scales[8 + g % 4] >> (2 * (g / 4))) & 0x03;
                sc[g] = d * f32::from((low | (high << 4)) as i8 - 32);
            }
            // The low two bits as Q2_K's; 4 is subtracted where the high-mask bit is clear.
            for (e, q) in q.iter_mut().enumerate() {
                let low = (qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
                let high = (hmask[e % 32] >> (e / 32)) & 1;
                *q = low as i8 - if high == 0 { 4 } else { 0 };
            }
        }
        DType::Q4_K | DType::Q5_K => {
            let (d, dmin, scales) = (f16_at(b, 0), f16_at(b, 2), &b[4..16]);
            for g in 0..8 {
                let (s, m) = k_scale_min(scales, g);
                sc[g] = d * f32::from(s);
                off[g] = -(dmin * f32::from(m));
            }
            let (qh, qs) = if dtype == DType::Q5_K { (&b[16..48], &b[48..176]) } else { (&b[0..0], &b[16..144]) };
            // Element e: byte (e / 64) * 32 + e % 32, the low nibble for (e % 64) < 32; Q5_K's
            // fifth bit is bit e / 32 of high byte e % 32.
            for (e, q) in q.iter_mut().enumerate() {
                let nib = (qs[(e / 64) * 32 + e % 32] >> (4 * ((e % 64) / 32))) & 0x0F;
                let fifth = if qh.is_empty() { 0 } else { ((qh[e % 32] >> (e / 32)) & 1) << 4 };
                *q = (nib | fifth) as i8;
            }
        }
        DType::Q6_K => {
            let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = f16_at(b, 208);
            for g in 0..16 {
                sc[g] = d * f32::from(scales[g] as i8);
            }
            // Element e in half h = e / 128: low nibble of byte h * 64 + e % 64 (the high nibble
            // for (e % 128) >= 64), and two high bits of byte h * 32 + e % 32 at 2 * ((e % 128) / 32).
            for (e, q) in q.iter_mut().enumerate() {
                let h = e / 128;
                let low = (ql[h * 64 + e % 64] >> (4 * ((e % 128) / 64))) & 0x0F;
                let high = (qh[h * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 0x03;
                *q = (low | (high << 4)) as i8 - 32;
            }
        }
        DType::IQ4_XS => {
            let d = f16_at(b, 0);
            let high = u16::from_le_bytes([b[2], b[3]]);
            let (low, qs) = (&b[4..8], &b[8..136]);
            for g in 0..8 {
                let l = (low[g / 2] >> (4 * (g % 2))) & 0x0F;
                let h = ((high >> (2 * g)) & 0x03) as u8;
                sc[g] = d * f32::from((l | (h << 4)) as i8 - 32);
                // Group g: byte g * 16 + i % 16, the high nibble for i >= 16.
                for i in 0..32 {
                    let nib = (qs[g * 16 + i % 16] >> (4 * (i / 16))) & 0x0F;
                    q[g * 32 + i] = IQ4_LEVELS[nib as usize];
                }
            }
        }
        DType::F32 | DType::F16 | DType::BF16 => unreachable!("dense types have no groups"),
    }
    true
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
        _ => {
            let mut out = vec![0.0f32; n];
            let (elements, block_bytes) = dtype.block();
            let mut parts = BlockParts::default();
            for (b, o) in data.chunks_exact(block_bytes).zip(out.chunks_exact_mut(elements)) {
                decode_block(dtype, b, &mut parts);
                parts.values(o);
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
    fn quants_stay_in_their_range_and_groups_fill_blocks() {
        for dtype in DType::QUANTIZED {
            let (elements, bytes) = dtype.block();
            let (group, offsets) = dtype.groups().unwrap();
            assert_eq!(elements % group, 0);
            let mut parts = BlockParts::default();
            for fill in [0x00u8, 0xFF, 0x5A, 0xA5] {
                assert!(decode_block(dtype, &vec![fill; bytes], &mut parts), "{dtype:?}");
                assert_eq!((parts.elements, parts.group, parts.has_offsets), (elements, group, offsets));
                assert!(parts.quants[..elements].iter().all(|q| dtype.quant_range().contains(q)), "{dtype:?}");
            }
            assert!(!decode_block(dtype, &vec![0; bytes + 1], &mut parts));
        }
        assert!(!decode_block(DType::F16, &[0; 2], &mut BlockParts::default()));
    }

    #[test]
    fn wrong_length_is_none() {
        assert!(dequantize(DType::Q8_0, &[0; 33], 32).is_none());
        assert!(dequantize(DType::F32, &[0; 8], 3).is_none());
        assert!(dequantize(DType::Q4_0, &[0; 18], 16).is_none());
        assert!(dequantize(DType::Q4_1, &[0; 20], 33).is_none());
        assert!(dequantize(DType::Q4_K, &[0; 144], 128).is_none());
    }
}
