//! Row-wise and elementwise operations: embedding, RMSNorm, the gated activations, scaling,
//! residual add.

use focusllm_core::Activation;
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

/// `act(gate) * up`.
pub(crate) fn glu(gate: &CpuTensor, up: &CpuTensor, act: Activation) -> CpuTensor {
    let mut out = gate.data.clone();
    out.par_chunks_mut(4096).zip(up.data.par_chunks(4096)).for_each(|(g, u)| match act {
        Activation::Silu => g.iter_mut().zip(u).for_each(|(g, &u)| *g = *g / (1.0 + (-*g).exp()) * u),
        Activation::GeluTanh => g.iter_mut().zip(u).for_each(|(g, &u)| *g = gelu_tanh(*g) * u),
    });
    CpuTensor::new(out, gate.rows, gate.cols)
}

/// GELU, tanh approximation: `x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// `x * factor`.
pub(crate) fn scale(x: &CpuTensor, factor: f32) -> CpuTensor {
    let mut out = x.data.clone();
    out.par_chunks_mut(4096).for_each(|o| o.iter_mut().for_each(|o| *o *= factor));
    CpuTensor::new(out, x.rows, x.cols)
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
