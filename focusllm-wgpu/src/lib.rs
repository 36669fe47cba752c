//! The focusllm [`Backend`] on portable GPUs through wgpu (Vulkan, Metal, DX12, GL): every operation
//! of the transformer is a WGSL compute shader, activations stay on the device, and the only
//! read-back is [`Backend::to_host`] (the logits of a forward).
//!
//! - Weights: GGUF's quantised matrices (every block type the crate reads) keep their blocks,
//!   dequantised by the shaders as they read them; other matrices in f16 where the adapter has
//!   `SHADER_F16` (converted from f32/bf16/f16 at upload), f32 otherwise or when
//!   [`WeightPrecision::F32`] is asked for; vectors in f32. A matrix larger than the adapter's largest storage binding is split into row
//!   ranges.
//! - Kernels: tiled matrix product with workgroup memory (and a matrix-vector kernel for decode
//!   steps), fused causal attention with online softmax and GQA over packed sequences, RMSNorm,
//!   RoPE at given positions, SwiGLU, embedding lookup, residual sum; row gathers, scatters and
//!   appends are buffer copies (capacity grows by an eighth, `grown_capacity`).
//! - Memory: activation buffers come from a pool and return to it when the last handle drops.
//! - Errors: no adapter, shape mismatches and errors wgpu reports come back as
//!   [`focusllm_core::Error::Backend`] with `backend: "wgpu"`.
#![warn(missing_docs)]

mod context;
mod kernels;
mod pool;
mod program;
mod tensor;

use std::ops::Range;
use std::sync::Arc;

use focusllm_core::{
    packed_key_values, Activation, AttentionSeq, Backend, HeadLayout, HostTensor, KeyValues, Result, RowSlice,
};

use context::{err, Context};
use kernels::{attention, elementwise, embedding, matmul, norm, rope, rows};
pub use tensor::{WgpuTensor, WgpuWeight};

/// Options of the wgpu backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WgpuOptions {
    /// Index of the adapter to use among those wgpu enumerates (see [`WgpuBackend::adapters`]);
    /// `None` picks the most capable one (discrete, then integrated GPU, then others; native APIs
    /// before GL). `WGPU_BACKEND` (e.g. `vulkan`) narrows the search.
    pub adapter: Option<usize>,
}

/// Precision in which weight matrices are kept on the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WeightPrecision {
    /// f16 where the adapter supports f16 in shaders, f32 otherwise.
    #[default]
    Auto,
    /// Always f32 (twice the memory; results closest to the CPU backend).
    F32,
}

/// Settings beyond [`WgpuOptions`], for [`WgpuBackend::with_config`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WgpuConfig {
    /// Precision of dense weight matrices (quantised ones keep their blocks either way).
    pub precision: WeightPrecision,
    /// Largest part (bytes) of a weight matrix; below the adapter's storage-binding limit it forces
    /// weights to be split into more parts (`None`: the adapter's limit).
    pub max_binding_bytes: Option<u64>,
}

/// What wgpu reports about one adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    /// Index to pass as [`WgpuOptions::adapter`].
    pub index: usize,
    /// The adapter's name (e.g. "llvmpipe (LLVM 15.0.6, 256 bits)").
    pub name: String,
    /// The graphics API (e.g. "Vulkan", "Gl").
    pub backend: String,
    /// The kind of device (e.g. "DiscreteGpu", "Cpu").
    pub device_type: String,
    /// Whether shaders can use f16 (weights are then kept in f16).
    pub shader_f16: bool,
}

/// The wgpu backend: one device and queue, shared by every tensor it makes.
pub struct WgpuBackend {
    ctx: Arc<Context>,
}

impl std::fmt::Debug for WgpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuBackend")
            .field("adapter", &self.ctx.adapter)
            .field("f16_weights", &self.ctx.f16_weights)
            .finish()
    }
}

impl WgpuBackend {
    /// Opens the adapter chosen by `options`, with weights in f16 where the adapter allows.
    /// Fails with [`focusllm_core::Error::Backend`] when there is no (such) adapter.
    pub fn new(options: WgpuOptions) -> Result<Self> {
        Self::with_config(options, WgpuConfig::default())
    }

    /// Opens the adapter chosen by `options` with the settings of `config`.
    pub fn with_config(options: WgpuOptions, config: WgpuConfig) -> Result<Self> {
        if config.max_binding_bytes == Some(0) {
            return Err(focusllm_core::Error::InvalidOption {
                name: "max_binding_bytes",
                value: "0".into(),
                reason: "must be positive",
            });
        }
        Ok(WgpuBackend { ctx: Arc::new(Context::new(&options, &config)?) })
    }

    /// Every adapter wgpu finds on this machine, indexed as [`WgpuOptions::adapter`] expects.
    pub fn adapters() -> Vec<AdapterSummary> {
        context::list_adapters()
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.ctx.adapter
    }

    /// Whether weight matrices are kept in f16.
    pub fn f16_weights(&self) -> bool {
        self.ctx.f16_weights
    }

    /// Bytes of freed activation buffers the pool keeps for reuse.
    pub fn pooled_bytes(&self) -> u64 {
        self.ctx.pool_free_bytes()
    }

    /// Waits until every queued operation has finished on the device (e.g. before timing).
    pub fn synchronize(&self) -> Result<()> {
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| err(format!("waiting for the device: {e}")))?;
        self.ctx.check()
    }
}

impl Backend for WgpuBackend {
    type Tensor = WgpuTensor;
    type Weight = WgpuWeight;

    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn upload_weight(&self, tensor: &HostTensor<'_>) -> Result<WgpuWeight> {
        tensor::upload_weight(&self.ctx, tensor)
    }

    fn from_host(&self, data: &[f32], rows: usize, cols: usize) -> Result<WgpuTensor> {
        self.ctx.check()?;
        Ok(WgpuTensor::new(self.ctx.upload(data, "tensor")?, rows, cols))
    }

    fn to_host(&self, x: &WgpuTensor) -> Result<Vec<f32>> {
        let bytes = self.ctx.read(&x.buf, x.bytes())?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    fn dims(&self, x: &WgpuTensor) -> (usize, usize) {
        x.dims()
    }

    fn weight_dims(&self, w: &WgpuWeight) -> (usize, usize) {
        (w.rows, w.cols)
    }

    fn embedding(&self, table: &WgpuWeight, ids: &[u32]) -> Result<WgpuTensor> {
        embedding::embedding(&self.ctx, table, ids)
    }

    fn linear(&self, x: &WgpuTensor, weight: &WgpuWeight, bias: Option<&WgpuWeight>) -> Result<WgpuTensor> {
        matmul::linear(&self.ctx, x, weight, bias)
    }

    fn rms_norm(&self, x: &WgpuTensor, weight: &WgpuWeight, eps: f32) -> Result<WgpuTensor> {
        norm::rms_norm(&self.ctx, x, weight, eps)
    }

    fn rope(&self, x: &WgpuTensor, positions: &[u32], table: &WgpuTensor, head_dim: usize) -> Result<WgpuTensor> {
        rope::rope(&self.ctx, x, positions, table, head_dim)
    }

    fn attention(
        &self,
        q: &WgpuTensor,
        kv: &[KeyValues<'_, WgpuTensor>],
        seqs: &[AttentionSeq],
        heads: HeadLayout,
    ) -> Result<WgpuTensor> {
        // The kernel reads one key and one value buffer: a batch's caches are packed first.
        let (k, v, seqs) = packed_key_values(self, kv, seqs)?;
        attention::attention(&self.ctx, q, &k, &v, &seqs, heads)
    }

    fn glu(&self, gate: &WgpuTensor, up: &WgpuTensor, act: Activation) -> Result<WgpuTensor> {
        elementwise::glu(&self.ctx, gate, up, act)
    }

    fn scale(&self, x: &WgpuTensor, factor: f32) -> Result<WgpuTensor> {
        elementwise::scale(&self.ctx, x, factor)
    }

    fn add(&self, a: &WgpuTensor, b: &WgpuTensor) -> Result<WgpuTensor> {
        elementwise::add(&self.ctx, a, b)
    }

    fn gather_rows(&self, parts: &[RowSlice<'_, WgpuTensor>]) -> Result<WgpuTensor> {
        rows::gather_rows(&self.ctx, parts)
    }

    fn scatter_rows(&self, dst: &mut WgpuTensor, rows: &[usize], src: &WgpuTensor) -> Result<()> {
        rows::scatter_rows(&self.ctx, dst, rows, src)
    }

    fn append_rows(&self, dst: &mut WgpuTensor, src: &WgpuTensor, rows: Range<usize>) -> Result<()> {
        rows::append_rows(&self.ctx, dst, src, rows)
    }

    fn reshape(&self, x: WgpuTensor, rows: usize, cols: usize) -> Result<WgpuTensor> {
        Ok(WgpuTensor { rows, cols, ..x })
    }

    fn truncate_rows(&self, x: &mut WgpuTensor, rows: usize) -> Result<()> {
        rows::truncate_rows(x, rows)
    }
}
