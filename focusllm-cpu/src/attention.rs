//! Causal scaled dot-product attention over a packed batch of sequences, with GQA.

use focusllm_core::{AttentionSeq, HeadLayout};
use rayon::prelude::*;

use crate::tensor::{axpy, dot, CpuTensor};

/// See [`focusllm_core::Backend::attention`]. Work is split over (query row, head) pairs, so even a
/// single decoded token uses every thread.
pub(crate) fn attention(q: &CpuTensor, k: &CpuTensor, v: &CpuTensor, seqs: &[AttentionSeq], h: HeadLayout) -> CpuTensor {
    let (nh, hd) = (h.num_heads, h.head_dim);
    let group = nh / h.num_kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    // Which sequence each packed query row belongs to.
    let mut row_seq = vec![0usize; q.rows];
    for (s, seq) in seqs.iter().enumerate() {
        row_seq[seq.q_start..seq.q_start + seq.q_len].iter_mut().for_each(|x| *x = s);
    }
    let mut out = vec![0.0f32; q.rows * nh * hd];
    out.par_chunks_mut(hd).enumerate().for_each_init(Vec::new, |scores: &mut Vec<f32>, (idx, o)| {
        let (r, head) = (idx / nh, idx % nh);
        let seq = &seqs[row_seq[r]];
        let i = r - seq.q_start;
        let visible = seq.kv_len - seq.q_len + i + 1;
        let kv_off = (head / group) * hd;
        let qv = &q.row(r)[head * hd..(head + 1) * hd];
        scores.clear();
        let mut max = f32::NEG_INFINITY;
        for j in 0..visible {
            let kv = &k.row(seq.kv_start + j)[kv_off..kv_off + hd];
            let s = dot(qv, kv) * scale;
            max = max.max(s);
            scores.push(s);
        }
        let mut total = 0.0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            total += *s;
        }
        let inv = 1.0 / total;
        for (j, &p) in scores.iter().enumerate() {
            axpy(o, p * inv, &v.row(seq.kv_start + j)[kv_off..kv_off + hd]);
        }
    });
    CpuTensor::new(out, q.rows, nh * hd)
}
