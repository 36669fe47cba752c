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
#[allow(non_camel_case_types)] // ggml's names
pub(crate) enum WeightType {
    F32,
    F16,
    /// ggml's Q8_0 blocks, read in place (the GGUF bytes as u32 words).
    Q8_0,
    /// ggml's Q4_0 blocks, read in place.
    Q4_0,
    /// ggml's Q4_1 blocks, read in place.
    Q4_1,
    /// ggml's Q5_0 blocks, read in place.
    Q5_0,
    /// ggml's Q5_1 blocks, read in place.
    Q5_1,
    /// ggml's Q2_K super-blocks, read in place.
    Q2_K,
    /// ggml's Q3_K super-blocks, read in place.
    Q3_K,
    /// ggml's Q4_K super-blocks, read in place.
    Q4_K,
    /// ggml's Q5_K super-blocks, read in place.
    Q5_K,
    /// ggml's Q6_K super-blocks, read in place.
    Q6_K,
    /// ggml's IQ4_NL blocks, read in place.
    IQ4_NL,
    /// ggml's IQ4_XS super-blocks, read in place.
    IQ4_XS,
}

impl WeightType {
    /// The block type read in place for a checkpoint's `dtype`, `None` for the dense types.
    pub(crate) fn blocks(dtype: focusllm_core::DType) -> Option<Self> {
        use focusllm_core::DType as D;
        Some(match dtype {
            D::Q8_0 => WeightType::Q8_0,
            D::Q4_0 => WeightType::Q4_0,
            D::Q4_1 => WeightType::Q4_1,
            D::Q5_0 => WeightType::Q5_0,
            D::Q5_1 => WeightType::Q5_1,
            D::Q2_K => WeightType::Q2_K,
            D::Q3_K => WeightType::Q3_K,
            D::Q4_K => WeightType::Q4_K,
            D::Q5_K => WeightType::Q5_K,
            D::Q6_K => WeightType::Q6_K,
            D::IQ4_NL => WeightType::IQ4_NL,
            D::IQ4_XS => WeightType::IQ4_XS,
            D::F32 | D::F16 | D::BF16 => return None,
        })
    }

    /// The checkpoint type a weight of this type holds.
    pub(crate) fn dtype(self) -> focusllm_core::DType {
        use focusllm_core::DType as D;
        match self {
            WeightType::F32 => D::F32,
            WeightType::F16 => D::F16,
            WeightType::Q8_0 => D::Q8_0,
            WeightType::Q4_0 => D::Q4_0,
            WeightType::Q4_1 => D::Q4_1,
            WeightType::Q5_0 => D::Q5_0,
            WeightType::Q5_1 => D::Q5_1,
            WeightType::Q2_K => D::Q2_K,
            WeightType::Q3_K => D::Q3_K,
            WeightType::Q4_K => D::Q4_K,
            WeightType::Q5_K => D::Q5_K,
            WeightType::Q6_K => D::Q6_K,
            WeightType::IQ4_NL => D::IQ4_NL,
            WeightType::IQ4_XS => D::IQ4_XS,
        }
    }
}
