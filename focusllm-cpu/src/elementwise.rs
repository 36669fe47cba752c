//! Row-wise and elementwise operations: embedding, RMSNorm, SwiGLU, residual add.

use rayon::prelude::*;

use crate::tensor::CpuTensor;
use crate::weight::CpuWeight;

/// Rows `ids` of `table` (ids checked by the caller).
pub(crate) fn embedding(table: &CpuWeight, ids: &[u32]) -> CpuTensor {
    let (_, cols) = table.dims();
    let mut out = vec![0.0f32; ids.len() * cols];
    out.par_chunks_mut(cols.max(1)).zip(ids).for_each(|(o, &id)| match table {
        CpuWeight::Dense(t) => o.copy_from_slice(t.row(id as usize)),
        CpuWeight::Half(h) => h.widen_row(id as usize, o),
        CpuWeight::Quantized(q) => q.dequantize_row(id as usize, o),
    });
    CpuTensor::new(out, ids.len(), cols)
}

/// `x / sqrt(mean(x^2) + eps) * weight`, per row.
pub(crate) fn rms_norm(x: &CpuTensor, weight: &CpuTensor, eps: f32) -> CpuTensor {
    let mut out = x.data.clone();
    out.par_chunks_mut(x.cols.max(1)).for_each(|row| {
        let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / row.len() as f64;
        let inv = (1.0 / (ms + eps as f64).sqrt()) as f32;
        for (v, &w) in row.iter_mut().zip(&weight.data) {
            *v = w * (*v * inv);
        }
    });
    CpuTensor::new(out, x.rows, x.cols)
}

/// `silu(gate) * up`.
pub(crate) fn swiglu(gate: &CpuTensor, up: &CpuTensor) -> CpuTensor {
    let mut out = gate.data.clone();
    out.par_chunks_mut(4096).zip(up.data.par_chunks(4096)).for_each(|(g, u)| {
        for (g, &u) in g.iter_mut().zip(u) {
            *g = *g / (1.0 + (-*g).exp()) * u;
        }
    });
    CpuTensor::new(out, gate.rows, gate.cols)
}

/// `a + b`.
pub(crate) fn add(a: &CpuTensor, b: &CpuTensor) -> CpuTensor {
    let mut out = a.data.clone();
    out.par_chunks_mut(4096).zip(b.data.par_chunks(4096)).for_each(|(o, b)| {
        for (o, &b) in o.iter_mut().zip(b) {
            *o += b;
        }
    });
    CpuTensor::new(out, a.rows, a.cols)
}
