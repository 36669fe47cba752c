//! Device-resident tensors: f32 activations (shared, copy-on-write, with spare rows for cheap
//! appends) and weights kept in their checkpoint precision, quantised blocks included.

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use focusllm_core::DType;

/// A row-major `[rows, cols]` f32 activation on the device.
///
/// Cloning shares the device buffer; an in-place write (`scatter_rows`, `append_rows`) copies it
/// first if it is shared, so clones never see each other's writes. The buffer may hold spare
/// rows beyond `rows` (geometric growth by `grown_capacity`, for key/value caches). Its shape is known on the host:
/// asking for it never touches the GPU.
#[derive(Clone)]
pub struct CudaTensor {
    pub(crate) buf: Arc<CudaSlice<f32>>,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl CudaTensor {
    pub(crate) fn new(buf: CudaSlice<f32>, rows: usize, cols: usize) -> Self {
        debug_assert!(buf.len() >= rows * cols);
        CudaTensor { buf: Arc::new(buf), rows, cols }
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Rows the buffer can hold without growing.
    pub fn capacity_rows(&self) -> usize {
        self.buf.len().checked_div(self.cols).unwrap_or(usize::MAX)
    }
}

impl std::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaTensor")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("capacity_rows", &self.capacity_rows())
            .finish()
    }
}

/// A weight's elements on the device.
pub(crate) enum WeightData {
    /// f32 values (also every vector: norms and biases are converted at upload).
    F32(CudaSlice<f32>),
    /// IEEE half bit patterns.
    F16(CudaSlice<u16>),
    /// bfloat16 bit patterns.
    BF16(CudaSlice<u16>),
    /// ggml's block-quantised types: the checkpoint's bytes as they are, dequantised by the
    /// kernels as they read them (a Q4_1 matrix takes a sixth of its f32 size).
    Blocks(DType, CudaSlice<u8>),
}

impl WeightData {
    /// The element type's part of kernel names: `f32`, `f16`, `bf16`, `q8_0`, ..., `iq4_xs`
    /// (`linear_gemv_q4_1`, `embedding_f16`, ...).
    pub(crate) fn kernel_suffix(&self) -> &'static str {
        match self {
            WeightData::F32(_) => "f32",
            WeightData::F16(_) => "f16",
            WeightData::BF16(_) => "bf16",
            WeightData::Blocks(dtype, _) => block_suffix(*dtype),
        }
    }
}

/// The kernel-name part of a checkpoint type (the dense ones never come as blocks).
fn block_suffix(dtype: DType) -> &'static str {
    match dtype {
        DType::Q8_0 => "q8_0",
        DType::Q4_0 => "q4_0",
        DType::Q4_1 => "q4_1",
        DType::Q5_0 => "q5_0",
        DType::Q5_1 => "q5_1",
        DType::Q2_K => "q2_k",
        DType::Q3_K => "q3_k",
        DType::Q4_K => "q4_k",
        DType::Q5_K => "q5_k",
        DType::Q6_K => "q6_k",
        DType::IQ4_NL => "iq4_nl",
        DType::IQ4_XS => "iq4_xs",
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
    }
}

/// A weight on the device: a matrix `[out, in]` in its checkpoint precision (f32, f16, bf16, or
/// ggml's quantised blocks), or a vector `[n]` (one row) in f32.
pub struct CudaWeight {
    pub(crate) data: WeightData,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl CudaWeight {
    /// `(rows, cols)`; a vector is one row.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The precision the weight is kept in on the device.
    pub fn dtype(&self) -> DType {
        match self.data {
            WeightData::F32(_) => DType::F32,
            WeightData::F16(_) => DType::F16,
            WeightData::BF16(_) => DType::BF16,
            WeightData::Blocks(dtype, _) => dtype,
        }
    }

    /// The f32 data of a vector weight (norm scale, bias), if it is one.
    pub(crate) fn as_f32(&self) -> Option<&CudaSlice<f32>> {
        match &self.data {
            WeightData::F32(s) => Some(s),
            _ => None,
        }
    }
}

impl std::fmt::Debug for CudaWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaWeight")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("dtype", &self.dtype())
            .finish()
    }
}
