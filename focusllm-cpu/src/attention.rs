//! Causal scaled dot-product attention over a packed batch of sequences, with GQA and sliding
//! windows.
//!
//! Work is split into (sequence, head, block of query rows) tasks; each computes its scores
//! `Q K^T` and output `P V` with `gemm` straight from the queries and the sequence's own keys and
//! values (its cache, strided, no copies), so
//! long prefills run at matrix-product speed and a single decoded token still uses every thread.

use focusllm_core::{AttentionSeq, HeadLayout, KeyValues};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::attention_rows;
use crate::softmax::softmax;
use crate::tensor::CpuTensor;

/// Query rows per task: bounds the score buffer to `BLOCK * kv_len` floats.
const BLOCK: usize = 128;

/// A raw pointer that may cross threads; every task writes a disjoint set of output elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the pointer is only dereferenced by tasks that write disjoint elements of an output
// that outlives them (the `par_iter` that uses it borrows the output for its whole run).
unsafe impl Send for OutPtr {}
// SAFETY: as for `Send`: shared use only ever writes disjoint elements.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Taking `self` whole makes closures capture the wrapper, not the bare pointer.
    fn get(self) -> *mut f32 {
        self.0
    }
}

struct Task {
    seq: usize,
    /// The first query head.
    head: usize,
    /// Query heads from `head` on: one, or (for a few rows) every head of a key head's group.
    heads: usize,
    /// Query rows `start..end` within the sequence.
    start: usize,
    end: usize,
}

/// See [`focusllm_core::Backend::attention`].
pub(crate) fn attention(
    q: &CpuTensor,
    kv: &[KeyValues<'_, CpuTensor>],
    seqs: &[AttentionSeq],
    h: HeadLayout,
) -> CpuTensor {
    let (nh, hd) = (h.num_heads, h.head_dim);
    let group = nh / h.num_kv_heads;
    let scale = h.scale;
    let (q_stride, kv_stride) = (q.cols, h.num_kv_heads * hd);
    let mut out = vec![0.0f32; q.rows * q.cols];
    let out_ptr = OutPtr(out.as_mut_ptr());

    // A sequence of a few rows runs one task per key head (its keys and values read once for the
    // whole group) when that still gives every thread several tasks; otherwise one per head.
    let few = |seq: &AttentionSeq| seq.q_len <= attention_rows::MAX_ROWS;
    let grouped = seqs.iter().all(few) && seqs.len() * h.num_kv_heads >= 2 * rayon::current_num_threads();
    let per = if grouped { group } else { 1 };
    let mut tasks = Vec::new();
    for (s, seq) in seqs.iter().enumerate() {
        for head in (0..nh).step_by(per) {
            for start in (0..seq.q_len).step_by(BLOCK) {
                tasks.push(Task { seq: s, head, heads: per, start, end: (start + BLOCK).min(seq.q_len) });
            }
        }
    }
    tasks.par_iter().for_each_init(Vec::new, |buffer: &mut Vec<f32>, t| {
        let (seq, KeyValues { k, v }) = (&seqs[t.seq], kv[t.seq]);
        let rows = t.end - t.start;
        // Query row i sits at key position offset + i. Keys are read from `first`, the first key the
        // block's first row sees (its window's start), so that positions below count from there.
        let first = h.first_key(seq.kv_len - seq.q_len + t.start);
        let offset = seq.kv_len - seq.q_len - first;
        let keys = offset + t.end; // keys visible to the block's last row
        let kv_col = (t.head / group) * hd;
        let q_at = (seq.q_start + t.start) * q_stride + t.head * hd;
        if rows <= attention_rows::MAX_ROWS {
            let kv_at = (seq.kv_start + first) * kv_stride + kv_col;
            let (k, v) = (&k.data[kv_at..], &v.data[kv_at..]);
            let ops = attention_rows::Rows {
                q: &q.data[q_at..],
                q_stride,
                heads: t.heads,
                k,
                v,
                kv_stride,
                head_dim: hd,
                rows,
                offset: offset + t.start,
                scale,
                window: h.window,
            };
            attention_rows::attend(&ops, buffer, |i, head, row| {
                let at = q_at + i * q_stride + head * hd;
                // SAFETY: this task alone writes rows start..end of this sequence, columns of its
                // heads, all inside the output (the sequence's rows lie within it, checked by core).
                unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), out_ptr.get().add(at), hd) };
            });
            return;
        }
        // The buffer only grows: the product overwrites every score it keeps (it does not read
        // them), and the masked tail of each row is zeroed below, so refilling it is not needed.
        if buffer.len() < rows * keys {
            buffer.resize(rows * keys, 0.0);
        }
        let scores = &mut buffer[..rows * keys];
        let q_base = q.data[q_at..].as_ptr();
        let k_base = k.data[(seq.kv_start + first) * kv_stride + kv_col..].as_ptr();
        let v_base = v.data[(seq.kv_start + first) * kv_stride + kv_col..].as_ptr();
        // SAFETY: all strides stay inside the queries and this sequence's keys/values (the contract's
        // check put every sequence's rows inside its tensors, of width kv_stride); scores is
        // rows x keys, row-major.
        unsafe {
            // scores[i, j] = scale * q[i] . k[j]
            gemm::gemm(
                rows,
                keys,
                hd,
                scores.as_mut_ptr(),
                1,
                keys as isize,
                false,
                q_base,
                1,
                q_stride as isize,
                k_base,
                kv_stride as isize,
                1,
                0.0,
                scale,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        for i in 0..rows {
            let visible = offset + t.start + i + 1;
            let from = h.window.map_or(0, |w| visible.saturating_sub(w));
            let row = &mut scores[i * keys..(i + 1) * keys];
            softmax(&mut row[from..visible]);
            row[..from].iter_mut().for_each(|x| *x = 0.0);
            row[visible..].iter_mut().for_each(|x| *x = 0.0);
        }
        // SAFETY: the offset is inside the output: the sequence's query rows start..end lie within
        // its rows (checked by core), and the head's columns within `q_stride`.
        let dst = unsafe { out_ptr.get().add(q_at) };
        // SAFETY: this task alone writes rows start..end of this sequence, columns of this head.
        unsafe {
            gemm::gemm(
                rows,
                hd,
                keys,
                dst,
                1,
                q_stride as isize,
                false,
                scores.as_ptr(),
                1,
                keys as isize,
                v_base,
                1,
                kv_stride as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    });
    CpuTensor::new(out, q.rows, nh * hd)
}
