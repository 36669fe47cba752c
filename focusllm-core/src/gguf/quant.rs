//! Dequantisation of ggml tensor data to f32: F32, F16, BF16, Q8_0, Q4_0 and Q4_1.
//!
//! The arithmetic follows ggml (and Python's `gguf.quants`) operation for operation, so results
//! are bit-identical: the f16 scale is widened to f32 and multiplied by the quant in f32.

use half::f16;

use super::reader::GgmlType;

/// Elements per block of the block-quantised types.
const QK: usize = 32;

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantises `data` (exactly `n` elements of type `ty`) to f32; `None` when the type is not one
/// of the supported ones or `data` does not hold exactly `n` elements.
pub fn dequantize(ty: GgmlType, data: &[u8], n: usize) -> Option<Vec<f32>> {
    let (block_elems, block_bytes) = ty.block()?;
    let (block_elems, block_bytes) = (block_elems as usize, block_bytes as usize);
    if n % block_elems != 0 || (n / block_elems).checked_mul(block_bytes) != Some(data.len()) {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    match ty {
        GgmlType::F32 => {
            out.extend(data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        }
        GgmlType::F16 => out.extend(data.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())),
        GgmlType::BF16 => {
            out.extend(data.chunks_exact(2).map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)));
        }
        GgmlType::Q8_0 => {
            for b in data.chunks_exact(block_bytes) {
                let d = f16_at(b, 0);
                out.extend(b[2..2 + QK].iter().map(|&q| f32::from(q as i8) * d));
            }
        }
        GgmlType::Q4_0 => {
            for b in data.chunks_exact(block_bytes) {
                let d = f16_at(b, 0);
                let qs = &b[2..2 + QK / 2];
                out.extend(qs.iter().map(|&q| d * f32::from((q & 0x0F) as i8 - 8)));
                out.extend(qs.iter().map(|&q| d * f32::from((q >> 4) as i8 - 8)));
            }
        }
        GgmlType::Q4_1 => {
            for b in data.chunks_exact(block_bytes) {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                let qs = &b[4..4 + QK / 2];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0x0F) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
        }
        _ => return None,
    }
    debug_assert_eq!(out.len(), n);
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
        let x = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        assert_eq!(x[0], -8.0);
        assert_eq!(x[15], 7.0);
        assert_eq!(x[16], 7.0);
        assert_eq!(x[31], -8.0);
        let mut b1 = vec![0x00, 0x3C, 0x00, 0x40]; // d = 1, m = 2
        b1.extend((0..16u8).map(|i| i | ((15 - i) << 4)));
        let y = dequantize(GgmlType::Q4_1, &b1, 32).unwrap();
        assert_eq!((y[0], y[15], y[16]), (2.0, 17.0, 17.0));
    }

    #[test]
    fn wrong_length_or_type_is_none() {
        assert!(dequantize(GgmlType::Q8_0, &[0; 33], 32).is_none());
        assert!(dequantize(GgmlType::F32, &[0; 8], 3).is_none());
        assert!(dequantize(GgmlType::Q4_0, &[0; 18], 16).is_none());
        assert!(dequantize(GgmlType(12), &[0; 144], 256).is_none());
    }
}
