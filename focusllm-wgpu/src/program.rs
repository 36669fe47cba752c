//! What the context caches and the tensors are stored as, below both: a compiled kernel and the
//! element type a shader reads a weight buffer as.

/// A compiled compute pipeline and the layout of its bind group.
pub(crate) struct Kernel {
    pub(crate) name: String,
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

/// Element type of a weight buffer as the shader reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WeightType {
    F32,
    F16,
    /// ggml's Q8_0 blocks, read in place (the GGUF bytes as u32 words).
    Q8_0,
    /// ggml's Q4_0 blocks, read in place.
    Q4_0,
    /// ggml's Q4_1 blocks, read in place.
    Q4_1,
}
