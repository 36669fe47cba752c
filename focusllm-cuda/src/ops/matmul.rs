//! `x @ w^T + bias`: picks the GEMV, tensor-core or CUDA-core kernel for the shape, weight type
//! and architecture.

use focusllm_core::Result;

use crate::error::err;
use crate::kernels::KernelSource;
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
        let bias_ptr = match bias {
            Some(b) => {
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
        let (family, cfg) = match kind {
            MatmulKernel::Gemv => ("linear_gemv", config((blocks(n, 8), 1, 1), 256, 0)),
            MatmulKernel::TensorCore => ("linear_mma", config((blocks(n, 64), blocks(m, 64), 1), 128, 0)),
            MatmulKernel::Tiled => ("linear_tiled", config((blocks(n, 64), blocks(m, 64), 1), 256, 0)),
        };
        let suffix = w.data.kernel_suffix();
        let name = KernelSource::Matmul
            .kernel(family, suffix)
            .ok_or_else(|| err(format!("linear: no {family} kernel for {suffix} weights")))?;
        let w_ptr = self.weight_ptr(&w.data);
        launch!(self, name, cfg; self.ptr(&out, 0), self.ptr(&x.buf, 0), w_ptr, bias_ptr, m as i32, k as i32, n as i32);
        Ok(CudaTensor::new(out, m, n))
    }
}
