//! `x @ w^T + bias`: picks the GEMV, tensor-core or CUDA-core kernel for the shape, weight type
//! and architecture.

use focusllm_core::Result;

use crate::error::{check, err};
use crate::launch::{blocks, config, launch};
use crate::tensor::{CudaTensor, CudaWeight, WeightData};
use crate::CudaBackend;

/// Up to this many rows, one warp per output column reads each weight once for all rows
/// (`GEMV_MAX_ROWS` in matmul.cu).
const GEMV_MAX_ROWS: usize = 8;

/// Which kernel family computes a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatmulKernel {
    Gemv,
    TensorCore,
    Tiled,
}

/// The kernel for `rows` activation rows against a weight of type `data` on compute capability
/// `cc`.
pub(crate) fn choose(rows: usize, data: &WeightData, cc: (i32, i32)) -> MatmulKernel {
    let half = matches!(data, WeightData::F16(_) | WeightData::BF16(_));
    if rows <= GEMV_MAX_ROWS {
        MatmulKernel::Gemv
    } else if half && cc.0 >= 8 {
        MatmulKernel::TensorCore
    } else {
        MatmulKernel::Tiled
    }
}

impl CudaBackend {
    pub(crate) fn op_linear(&self, x: &CudaTensor, w: &CudaWeight, bias: Option<&CudaWeight>) -> Result<CudaTensor> {
        check(x.cols == w.cols, || format!("linear: input width {} vs weight [{}, {}]", x.cols, w.rows, w.cols))?;
        let bias_ptr = match bias {
            Some(b) => {
                check(b.rows * b.cols == w.rows, || format!("linear: bias of {} for {} outputs", b.rows * b.cols, w.rows))?;
                let s = b.as_f32().ok_or_else(|| err("linear: the bias must be a vector weight"))?;
                self.ptr(s, 0)
            }
            None => 0u64,
        };
        let (m, k, n) = (x.rows, x.cols, w.rows);
        let out = self.alloc::<f32>("linear output", m * n)?;
        if m == 0 || n == 0 {
            return Ok(CudaTensor::new(out, m, n));
        }
        let kind = choose(m, &w.data, self.device.compute_capability);
        let (suffix, w_ptr) = match &w.data {
            WeightData::F32(s) => ("f32", self.ptr(s, 0)),
            WeightData::F16(s) => ("f16", self.ptr(s, 0)),
            WeightData::BF16(s) => ("bf16", self.ptr(s, 0)),
        };
        let (name, cfg): (&'static str, _) = match (kind, suffix) {
            (MatmulKernel::Gemv, s) => (gemv_name(s), config((blocks(n, 8), 1, 1), 256, 0)),
            (MatmulKernel::TensorCore, s) => (mma_name(s), config((blocks(n, 64), blocks(m, 64), 1), 128, 0)),
            (MatmulKernel::Tiled, s) => (tiled_name(s), config((blocks(n, 64), blocks(m, 64), 1), 256, 0)),
        };
        launch!(self, name, cfg; self.ptr(&out, 0), self.ptr(&x.buf, 0), w_ptr, bias_ptr, m as i32, k as i32, n as i32);
        Ok(CudaTensor::new(out, m, n))
    }
}

fn gemv_name(s: &str) -> &'static str {
    match s {
        "f32" => "linear_gemv_f32",
        "f16" => "linear_gemv_f16",
        _ => "linear_gemv_bf16",
    }
}

fn tiled_name(s: &str) -> &'static str {
    match s {
        "f32" => "linear_tiled_f32",
        "f16" => "linear_tiled_f16",
        _ => "linear_tiled_bf16",
    }
}

fn mma_name(s: &str) -> &'static str {
    match s {
        "f16" => "linear_mma_f16",
        _ => "linear_mma_bf16",
    }
}
