//! Embedding, RMSNorm, RoPE, SwiGLU and the residual add.

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use focusllm_core::{Error, Result};

use crate::error::{check, err};
use crate::launch::{blocks, config, launch, per_element, THREADS};
use crate::kernels::KernelSource;
use crate::tensor::{CudaTensor, CudaWeight};
use crate::CudaBackend;

impl CudaBackend {
    pub(crate) fn op_embedding(&self, table: &CudaWeight, ids: &[u32]) -> Result<CudaTensor> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= table.rows) {
            return Err(Error::TokenOutOfRange { id, vocab_size: table.rows });
        }
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
        check(weight.rows * weight.cols == x.cols, || format!("rms_norm: weight of {} for width {}", weight.rows * weight.cols, x.cols))?;
        let out = self.alloc::<f32>("rms_norm output", x.rows * x.cols)?;
        if x.rows > 0 && x.cols > 0 {
            let cfg = config((x.rows as u32, 1, 1), THREADS, 0);
            launch!(self, "rms_norm", cfg; self.ptr(&out, 0), self.ptr(&x.buf, 0), self.ptr(w, 0), x.rows as i32, x.cols as i32, eps);
        }
        Ok(CudaTensor::new(out, x.rows, x.cols))
    }

    /// `inv_freq` on the device; the last one uploaded is kept, since a model passes the same
    /// frequencies to every call.
    fn inv_freq_on_device(&self, inv_freq: &[f32]) -> Result<Arc<CudaSlice<f32>>> {
        let mut cache = self.inv_freq.lock().expect("inv_freq cache poisoned");
        if let Some((host, dev)) = cache.as_ref() {
            if host.as_slice() == inv_freq {
                return Ok(dev.clone());
            }
        }
        let dev = Arc::new(self.upload("rope frequencies", inv_freq)?);
        *cache = Some((inv_freq.to_vec(), dev.clone()));
        Ok(dev)
    }

    pub(crate) fn op_rope(&self, x: &CudaTensor, positions: &[u32], inv_freq: &[f32], head_dim: usize) -> Result<CudaTensor> {
        check(positions.len() == x.rows, || format!("rope: {} positions for {} rows", positions.len(), x.rows))?;
        check(head_dim > 0 && head_dim % 2 == 0 && x.cols % head_dim == 0 && inv_freq.len() == head_dim / 2, || {
            format!("rope: width {} with head_dim {head_dim} and {} frequencies", x.cols, inv_freq.len())
        })?;
        let out = self.alloc::<f32>("rope output", x.rows * x.cols)?;
        let n = x.rows * x.cols / 2;
        if n > 0 {
            let pos = self.upload("rope positions", positions)?;
            let freq = self.inv_freq_on_device(inv_freq)?;
            launch!(self, "rope", per_element(n);
                self.ptr(&out, 0), self.ptr(&x.buf, 0), self.ptr(&pos, 0), self.ptr(&*freq, 0),
                x.rows as i32, x.cols as i32, head_dim as i32);
        }
        Ok(CudaTensor::new(out, x.rows, x.cols))
    }

    fn binary(&self, name: &'static str, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        check(a.dims() == b.dims(), || format!("{name}: {:?} vs {:?}", a.dims(), b.dims()))?;
        let n = a.rows * a.cols;
        let out = self.alloc::<f32>(&format!("{name} output"), n)?;
        if n > 0 {
            launch!(self, name, per_element(n); self.ptr(&out, 0), self.ptr(&a.buf, 0), self.ptr(&b.buf, 0), n as i64);
        }
        Ok(CudaTensor::new(out, a.rows, a.cols))
    }

    pub(crate) fn op_swiglu(&self, gate: &CudaTensor, up: &CudaTensor) -> Result<CudaTensor> {
        self.binary("swiglu", gate, up)
    }

    pub(crate) fn op_add(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        self.binary("add", a, b)
    }
}
