//! Fused causal attention over a packed batch: tiles the query rows, splits long key ranges
//! across blocks when there are too few blocks to fill the GPU (decoding), and merges the splits.

use cudarc::driver::sys::CUfunction_attribute;
use focusllm_core::{AttentionSeq, HeadLayout, Result};

use crate::error::{check, driver};
use crate::launch::{config, launch};
use crate::tensor::CudaTensor;
use crate::CudaBackend;

/// Query rows per block (`ATT_BQ` in attention.cu).
const BQ: usize = 16;
/// Keys per shared-memory tile (`ATT_BK`).
const BK: usize = 32;
/// Threads per block (`ATT_THREADS`).
const THREADS: u32 = 128;
/// Largest head width the kernel holds in registers (`32 * ATT_MAX_D`).
pub(crate) const MAX_HEAD_DIM: usize = 256;
/// Most key splits of one query tile.
const MAX_SPLITS: usize = 64;
/// Fewest keys worth a split of their own.
const MIN_SPLIT_KEYS: usize = 256;
/// Dynamic shared memory a kernel gets without opting in.
const DEFAULT_SHARED: usize = 48 * 1024;

/// Per tile: first packed query row, rows in the tile, key position of the first row, first
/// packed key row.
pub(crate) fn tiles(seqs: &[AttentionSeq]) -> Vec<i32> {
    let mut out = Vec::new();
    for s in seqs {
        for i0 in (0..s.q_len).step_by(BQ) {
            let n = BQ.min(s.q_len - i0);
            out.extend([(s.q_start + i0) as i32, n as i32, (s.kv_len - s.q_len + i0) as i32, s.kv_start as i32]);
        }
    }
    out
}

/// `(splits, keys per split)` for `blocks` blocks per split over at most `max_keys` keys on a
/// device of `multiprocessors`.
pub(crate) fn split_plan(blocks: usize, max_keys: usize, multiprocessors: usize) -> (usize, usize) {
    let target = 2 * multiprocessors.max(1);
    let mut splits = 1;
    if blocks < target && max_keys >= 2 * MIN_SPLIT_KEYS {
        splits = target.div_ceil(blocks.max(1)).min(max_keys / MIN_SPLIT_KEYS).clamp(1, MAX_SPLITS);
    }
    let split_len = max_keys.div_ceil(splits).div_ceil(BK) * BK;
    let split_len = split_len.max(BK);
    (max_keys.div_ceil(split_len).max(1), split_len)
}

/// Shared memory of one block for heads of width `hd`.
pub(crate) fn shared_bytes(hd: usize) -> usize {
    (BQ * hd + BK * (hd + 1) + BK * hd) * 4
}

impl CudaBackend {
    pub(crate) fn op_attention(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        seqs: &[AttentionSeq],
        h: HeadLayout,
    ) -> Result<CudaTensor> {
        check(h.head_dim <= MAX_HEAD_DIM, || {
            format!("attention: head_dim {} (the CUDA kernel supports 1..={MAX_HEAD_DIM})", h.head_dim)
        })?;
        check(q.rows <= i32::MAX as usize && k.rows <= i32::MAX as usize, || "attention: too many rows".into())?;

        let hd = h.head_dim;
        let out = self.alloc::<f32>("attention output", q.rows * q.cols)?;
        let tiles = tiles(seqs);
        let num_tiles = tiles.len() / 4;
        if num_tiles == 0 {
            return Ok(CudaTensor::new(out, q.rows, q.cols));
        }
        let max_keys = seqs.iter().filter(|s| s.q_len > 0).map(|s| s.kv_len).max().unwrap_or(0);
        let (splits, split_len) = split_plan(num_tiles * h.num_heads, max_keys, self.device.multiprocessors);

        let shared = shared_bytes(hd);
        let function = self.modules.function("attention")?;
        if shared > DEFAULT_SHARED {
            check(shared <= self.device.max_shared_per_block, || {
                format!(
                    "attention: head_dim {hd} needs {shared} bytes of shared memory, the device allows {}",
                    self.device.max_shared_per_block
                )
            })?;
            function
                .set_attribute(CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, shared as i32)
                .map_err(|e| driver("cannot raise the attention kernel's shared memory", e))?;
        }
        let tiles_dev = self.upload("attention tiles", &tiles)?;
        let partial = if splits > 1 {
            let slots = splits * q.rows * h.num_heads;
            Some((
                self.alloc::<f32>("attention partial sums", slots * hd)?,
                self.alloc::<f32>("attention partial maxima", slots * 2)?,
            ))
        } else {
            None
        };
        let (acc_ptr, ml_ptr) = partial.as_ref().map_or((0, 0), |(a, m)| (self.ptr(a, 0), self.ptr(m, 0)));
        // 0: no window; a window past i32 covers every key anyway.
        let window = h.window.map_or(0, |w| w.min(i32::MAX as usize) as i32);
        let cfg = config((num_tiles as u32, h.num_heads as u32, splits as u32), THREADS, shared as u32);
        launch!(self, "attention", cfg;
            self.ptr(&out, 0), acc_ptr, ml_ptr, self.ptr(&q.buf, 0), self.ptr(&k.buf, 0), self.ptr(&v.buf, 0),
            self.ptr(&tiles_dev, 0), q.rows as i32, h.num_heads as i32, h.num_kv_heads as i32, hd as i32,
            split_len as i32, splits as i32, h.scale, window);
        if splits > 1 {
            let threads = (hd.div_ceil(32) * 32).min(256) as u32;
            let cfg = config(((q.rows * h.num_heads) as u32, 1, 1), threads, 0);
            launch!(self, "attention_combine", cfg;
                self.ptr(&out, 0), acc_ptr, ml_ptr, q.rows as i32, h.num_heads as i32, hd as i32, splits as i32);
        }
        Ok(CudaTensor::new(out, q.rows, q.cols))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_every_query_row_at_its_position() {
        let seqs = [
            AttentionSeq { q_start: 0, q_len: 20, kv_start: 0, kv_len: 25 },
            AttentionSeq { q_start: 20, q_len: 1, kv_start: 25, kv_len: 7 },
        ];
        let t = tiles(&seqs);
        assert_eq!(t, vec![0, 16, 5, 0, 16, 4, 21, 0, 20, 1, 6, 25]);
    }

    #[test]
    fn split_plan_covers_every_key() {
        for (blocks, keys, sms) in [(9, 32768, 132), (9, 1, 132), (1000, 4096, 132), (1, 600, 1), (3, 100_000, 16)] {
            let (splits, len) = split_plan(blocks, keys, sms);
            assert!((1..=MAX_SPLITS).contains(&splits) && len % BK == 0);
            assert!(splits * len >= keys, "{blocks} {keys}: {splits} x {len}");
            assert!((splits - 1) * len < keys.max(1), "no empty split: {splits} x {len} for {keys}");
        }
        assert_eq!(split_plan(1000, 4096, 132).0, 1, "enough blocks: no split");
        assert!(split_plan(9, 32768, 132).0 > 1, "decode over a long context splits");
    }

    #[test]
    fn shared_memory_fits_the_default_up_to_head_dim_128() {
        assert!(shared_bytes(128) <= DEFAULT_SHARED);
        assert!(shared_bytes(256) > DEFAULT_SHARED);
    }
}
