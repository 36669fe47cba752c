//! Embedding, RMSNorm, RoPE, the gated activations, scaling and the residual add.

use focusllm_core::{Activation, Result};

use crate::error::err;
use crate::kernels::KernelSource;
use crate::launch::{blocks, config, launch, per_element, THREADS};
use crate::tensor::{CudaTensor, CudaWeight};
use crate::CudaBackend;

impl CudaBackend {
    pub(crate) fn op_embedding(&self, table: &CudaWeight, ids: &[u32]) -> Result<CudaTensor> {
        let (rows, cols) = (ids.len(), table.cols);
        let out = self.alloc::<f32>("embedding output", rows * cols)?;
        if rows > 0 && cols > 0 {
            let ids_dev = self.upload("token ids", ids)?;
            let cfg = config((rows as u32, blocks(cols, THREADS as usize), 1), THREADS, 0);
            let suffix = table.data.kernel_suffix();
            let name = KernelSource::Elementwise
                .kernel("embedding", suffix)
                .ok_or_else(|| err(format!("embedding: no kernel for {suffix} tables")))?;
            launch!(self, name, cfg; self.ptr(&out, 0), self.weight_ptr(&table.data), self.ptr(&ids_dev, 0), rows as i32, cols as i32);
        }
        Ok(CudaTensor::new(out, rows, cols))
    }

    pub(crate) fn op_rms_norm(&self, x: &CudaTensor, weight: &CudaWeight, eps: f32) -> Result<CudaTensor> {
        let w = weight.as_f32().ok_or_else(|| err("rms_norm: the scale must be a vector weight"))?;
        let out = self.alloc::<f32>("rms_norm output", x.rows * x.cols)?;
        if x.rows > 0 && x.cols > 0 {
            let cfg = config((x.rows as u32, 1, 1), THREADS, 0);
            launch!(self, "rms_norm", cfg; self.ptr(&out, 0), self.ptr(&x.buf, 0), self.ptr(w, 0), x.rows as i32, x.cols as i32, eps);
        }
        Ok(CudaTensor::new(out, x.rows, x.cols))
    }

    pub(crate) fn op_rope(
        &self,
        x: &CudaTensor,
        positions: &[u32],
        table: &CudaTensor,
        head_dim: usize,
    ) -> Result<CudaTensor> {
        let out = self.alloc::<f32>("rope output", x.rows * x.cols)?;
        let n = x.rows * x.cols / 2;
        if n > 0 {
            let pos = self.upload("rope positions", positions)?;
            launch!(self, "rope", per_element(n);
                self.ptr(&out, 0), self.ptr(&x.buf, 0), self.ptr(&pos, 0), self.ptr(&table.buf, 0),
                x.rows as i32, x.cols as i32, head_dim as i32);
        }
        Ok(CudaTensor::new(out, x.rows, x.cols))
    }

    fn binary(&self, name: &'static str, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        let n = a.rows * a.cols;
        let out = self.alloc::<f32>(&format!("{name} output"), n)?;
        if n > 0 {
            launch!(self, name, per_element(n); self.ptr(&out, 0), self.ptr(&a.buf, 0), self.ptr(&b.buf, 0), n as i64);
        }
        Ok(CudaTensor::new(out, a.rows, a.cols))
    }

    pub(crate) fn op_glu(&self, gate: &CudaTensor, up: &CudaTensor, act: Activation) -> Result<CudaTensor> {
        match act {
            Activation::Silu => self.binary("swiglu", gate, up),
            Activation::GeluTanh => self.binary("geglu", gate, up),
        }
    }

    pub(crate) fn op_scale(&self, x: &CudaTensor, factor: f32) -> Result<CudaTensor> {
        let n = x.rows * x.cols;
        let out = self.alloc::<f32>("scale output", n)?;
        if n > 0 {
            launch!(self, "scale", per_element(n); self.ptr(&out, 0), self.ptr(&x.buf, 0), factor, n as i64);
        }
        Ok(CudaTensor::new(out, x.rows, x.cols))
    }

    pub(crate) fn op_add(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        self.binary("add", a, b)
    }
}
