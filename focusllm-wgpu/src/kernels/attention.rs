//! Fused causal attention over a packed batch of sequences (online softmax, GQA, sliding windows).

use focusllm_core::{AttentionSeq, HeadLayout, Result};

use super::{Shader, WeightType};
use crate::context::{err, Context, Dispatch};
use crate::tensor::WgpuTensor;

/// Largest head width the kernel handles (64 threads x 4 dimensions each).
pub(crate) const MAX_HEAD_DIM: usize = 256;

pub(crate) fn attention(
    ctx: &Context,
    q: &WgpuTensor,
    k: &WgpuTensor,
    v: &WgpuTensor,
    seqs: &[AttentionSeq],
    h: HeadLayout,
) -> Result<WgpuTensor> {
    if h.head_dim > MAX_HEAD_DIM {
        return Err(err(format!("attention: head_dim {} (supported: 1..={MAX_HEAD_DIM})", h.head_dim)));
    }
    // Per query row: (first key row, keys visible), causal over past ++ new, within the window.
    let mut rows = vec![[0u32; 2]; q.rows];
    for s in seqs {
        for i in 0..s.q_len {
            let pos = s.kv_len - s.q_len + i;
            let first = h.first_key(pos);
            rows[s.q_start + i] = [(s.kv_start + first) as u32, (pos + 1 - first) as u32];
        }
    }
    let out = ctx.alloc(q.bytes(), "attention output")?;
    if q.rows == 0 || h.num_heads == 0 {
        return Ok(WgpuTensor::new(out, q.rows, q.cols));
    }
    let rows_buf = ctx.upload(&rows.concat(), "attention row table")?;
    let kernel = ctx.kernel(Shader::Attention, "main", WeightType::F32)?;
    let max = u64::from(ctx.limits.max_compute_workgroups_per_dimension);
    let n = q.rows as u64;
    let (gy, gz) = if n <= max { (n, 1) } else { (max, n.div_ceil(max)) };
    if h.num_heads as u64 > max || gz > max {
        return Err(err("attention: grid exceeds the adapter's dispatch limits"));
    }
    let scale = h.scale;
    ctx.run(&[Dispatch {
        kernel: &kernel,
        params: [
            q.rows as u32,
            h.num_heads as u32,
            h.num_kv_heads as u32,
            h.head_dim as u32,
            scale.to_bits(),
            q.cols as u32,
            k.cols as u32,
            0,
        ],
        buffers: vec![&q.buf, &k.buf, &v.buf, &rows_buf, &out],
        groups: [h.num_heads as u32, gy as u32, gz as u32],
    }])?;
    Ok(WgpuTensor::new(out, q.rows, q.cols))
}
