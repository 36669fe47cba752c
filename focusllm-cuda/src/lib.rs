//! The focusllm [`Backend`] on NVIDIA GPUs through CUDA.
//!
//! The CUDA driver and NVRTC are loaded at run time (cudarc with dynamic loading), so this crate
//! builds on machines without the CUDA toolkit, and a program built with it starts anywhere: on a
//! machine without a driver, a device or NVRTC, [`CudaBackend::new`] returns
//! [`focusllm_core::Error::Backend`] saying which is missing.
//!
//! The kernels are CUDA C files in `src/kernels/`, compiled by NVRTC for the device's architecture
//! the first time one of them is needed, and kept for the backend's life ([`kernels`] compiles them
//! without a GPU, for tests). Activations stay on the device as f32; weights keep their checkpoint
//! precision (f32, f16, bf16, or GGUF's quantised blocks, dequantised as the kernels read
//! them) and are multiplied with f32 accumulation, on the tensor cores for f16/bf16 on sm_80 and
//! newer. Only [`Backend::to_host`] waits for the GPU.
//!
//! Runtime requirements: an NVIDIA driver for CUDA 13 and `libnvrtc.so.13` on the library search
//! path (`pip install nvidia-cuda-nvrtc`; `scripts/install_nvrtc.sh` prints the directory).
#![warn(missing_docs)]

mod device;
mod error;
pub mod kernels;
mod launch;
mod memory;
mod modules;
mod ops;
mod tensor;

use std::ops::Range;

use focusllm_core::{
    packed_key_values, Activation, AttentionSeq, Backend, DType, HeadLayout, HostTensor, KeyValues, Result, RowSlice,
};

pub use device::driver_present;
pub use tensor::{CudaTensor, CudaWeight};

use device::Device;
use error::driver;
use modules::Modules;
use tensor::WeightData;

/// Options of the cuda backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CudaOptions {
    /// Ordinal of the CUDA device to use.
    pub ordinal: usize,
}

/// The cuda backend: one device, one stream, kernels compiled on first use.
pub struct CudaBackend {
    pub(crate) device: Device,
    pub(crate) modules: Modules,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.device.ctx.ordinal())
            .field("device", &self.device.name)
            .field("compute_capability", &self.device.compute_capability)
            .finish()
    }
}

impl CudaBackend {
    /// Opens the device chosen by `options`. Fails with [`focusllm_core::Error::Backend`] (never panics) when the
    /// CUDA driver, NVRTC or the device is missing.
    pub fn new(options: CudaOptions) -> Result<Self> {
        let device = Device::open(options.ordinal)?;
        let modules = Modules::new(device.ctx.clone(), device.arch());
        Ok(CudaBackend { device, modules })
    }

    /// The device's name, e.g. "NVIDIA H200".
    pub fn device_name(&self) -> &str {
        &self.device.name
    }

    /// The device's compute capability `(major, minor)`.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.device.compute_capability
    }

    /// The architecture kernels are compiled for, e.g. `sm_90`.
    pub fn arch(&self) -> String {
        self.device.arch()
    }

    /// `(free, total)` device memory in bytes.
    pub fn memory_info(&self) -> Result<(usize, usize)> {
        self.device.memory()
    }

    /// Waits until every queued operation has finished, reporting any failure of theirs.
    pub fn synchronize(&self) -> Result<()> {
        self.device.stream.synchronize().map_err(|e| driver("a queued operation failed", e))?;
        self.device.ctx.check_err().map_err(|e| driver("a queued operation failed", e))
    }

    /// Compiles and loads every kernel now rather than at first use (e.g. before timing).
    pub fn warm_up(&self) -> Result<()> {
        for source in kernels::KernelSource::ALL {
            for name in source.kernels() {
                self.modules.function(name)?;
            }
        }
        Ok(())
    }

    pub(crate) fn op_from_host(&self, data: &[f32], rows: usize, cols: usize) -> Result<CudaTensor> {
        Ok(CudaTensor::new(self.upload("tensor", data)?, rows, cols))
    }
}

/// Splits a checkpoint tensor's shape into (rows, cols); vectors are one row.
fn matrix_shape(t: &HostTensor<'_>) -> (usize, usize) {
    match t.shape.as_slice() {
        [r, c] => (*r, *c),
        _ => (1, t.len()),
    }
}

impl Backend for CudaBackend {
    type Tensor = CudaTensor;
    type Weight = CudaWeight;

    fn name(&self) -> &'static str {
        error::NAME
    }

    fn upload_weight(&self, t: &HostTensor<'_>) -> Result<CudaWeight> {
        let (rows, cols) = matrix_shape(t);
        let what = format!("weight `{}`", t.name);
        let halves = || -> Vec<u16> { t.bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect() };
        let data = match (t.dtype, rows) {
            // Vectors (norm scales, biases) are read by f32 kernels.
            (DType::F32, _) | (_, 1) => WeightData::F32(self.upload(&what, &t.to_f32())?),
            (DType::F16, _) => WeightData::F16(self.upload(&what, &halves())?),
            (DType::BF16, _) => WeightData::BF16(self.upload(&what, &halves())?),
            // Quantised matrices (from GGUF files) keep their blocks; the kernels dequantise.
            _ => WeightData::Blocks(t.dtype, self.upload(&what, &t.bytes)?),
        };
        Ok(CudaWeight { data, rows, cols })
    }

    fn from_host(&self, data: &[f32], rows: usize, cols: usize) -> Result<CudaTensor> {
        self.op_from_host(data, rows, cols)
    }

    fn to_host(&self, x: &CudaTensor) -> Result<Vec<f32>> {
        let n = x.rows * x.cols;
        if n == 0 {
            return Ok(Vec::new());
        }
        let host =
            self.device.stream.clone_dtoh(&x.buf.slice(0..n)).map_err(|e| driver("cannot read a tensor back", e))?;
        self.synchronize()?;
        Ok(host)
    }

    fn dims(&self, x: &CudaTensor) -> (usize, usize) {
        x.dims()
    }

    fn weight_dims(&self, w: &CudaWeight) -> (usize, usize) {
        (w.rows, w.cols)
    }

    fn embedding(&self, table: &CudaWeight, ids: &[u32]) -> Result<CudaTensor> {
        self.op_embedding(table, ids)
    }

    fn linear(&self, x: &CudaTensor, weight: &CudaWeight, bias: Option<&CudaWeight>) -> Result<CudaTensor> {
        self.op_linear(x, weight, bias)
    }

    fn rms_norm(&self, x: &CudaTensor, weight: &CudaWeight, eps: f32) -> Result<CudaTensor> {
        self.op_rms_norm(x, weight, eps)
    }

    fn rope(&self, x: &CudaTensor, positions: &[u32], table: &CudaTensor, head_dim: usize) -> Result<CudaTensor> {
        self.op_rope(x, positions, table, head_dim)
    }

    fn attention(
        &self,
        q: &CudaTensor,
        kv: &[KeyValues<'_, CudaTensor>],
        seqs: &[AttentionSeq],
        heads: HeadLayout,
    ) -> Result<CudaTensor> {
        // The kernel reads one key and one value buffer: a batch's caches are packed first.
        let (k, v, seqs) = packed_key_values(self, kv, seqs)?;
        self.op_attention(q, &k, &v, &seqs, heads)
    }

    fn glu(&self, gate: &CudaTensor, up: &CudaTensor, act: Activation) -> Result<CudaTensor> {
        self.op_glu(gate, up, act)
    }

    fn scale(&self, x: &CudaTensor, factor: f32) -> Result<CudaTensor> {
        self.op_scale(x, factor)
    }

    fn add(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        self.op_add(a, b)
    }

    fn gather_rows(&self, parts: &[RowSlice<'_, CudaTensor>]) -> Result<CudaTensor> {
        self.op_gather_rows(parts)
    }

    fn scatter_rows(&self, dst: &mut CudaTensor, rows: &[usize], src: &CudaTensor) -> Result<()> {
        self.op_scatter_rows(dst, rows, src)
    }

    fn append_rows(&self, dst: &mut CudaTensor, src: &CudaTensor, rows: Range<usize>) -> Result<()> {
        self.op_append_rows(dst, src, rows)
    }

    fn reshape(&self, x: CudaTensor, rows: usize, cols: usize) -> Result<CudaTensor> {
        Ok(CudaTensor { rows, cols, ..x })
    }

    fn truncate_rows(&self, x: &mut CudaTensor, rows: usize) -> Result<()> {
        self.op_truncate_rows(x, rows)
    }

    /// The device's free memory, so FocusLLM refuses an input whose chunk caches cannot fit
    /// before it starts instead of failing midway.
    fn memory_available(&self) -> Option<u64> {
        self.device.memory().ok().map(|(free, _)| free as u64)
    }
}
