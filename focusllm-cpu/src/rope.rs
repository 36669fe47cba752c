//! Rotary position embedding from the model's table of cos/sin per position.

use rayon::prelude::*;

use crate::tensor::CpuTensor;

/// Half-split rotation of every head of every row; row `r` is at `positions[r]`, whose cosines
/// and sines are row `positions[r]` of `table` (`[positions, head_dim]`, cosines first).
pub(crate) fn apply(x: &CpuTensor, positions: &[u32], table: &CpuTensor, head_dim: usize) -> CpuTensor {
    let half = head_dim / 2;
    let mut out = x.data.clone();
    out.par_chunks_mut(x.cols.max(1)).zip(positions.par_iter()).for_each(|(row, &pos)| {
        let (cos, sin) = table.row(pos as usize).split_at(half);
        for head in row.chunks_exact_mut(head_dim) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x2 * cos[i] + x1 * sin[i];
            }
        }
    });
    CpuTensor::new(out, x.rows, x.cols)
}
