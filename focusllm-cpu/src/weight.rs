//! `CpuWeight`: a checkpoint tensor as the CPU backend keeps it.

use crate::quantized::QuantMatrix;
use crate::tensor::CpuTensor;

/// A weight on the CPU: f32 values, or a block-quantised matrix (Q8_0, Q4_0, Q4_1 from a GGUF
/// file) kept in its blocks, so that decoding reads a fraction of the bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum CpuWeight {
    /// f32 values (dense checkpoints, vectors, and anything that is not a whole-block matrix).
    Dense(CpuTensor),
    /// A block-quantised `[rows, cols]` matrix.
    Quantized(QuantMatrix),
}

impl CpuWeight {
    /// `(rows, cols)`; a vector is one row.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            CpuWeight::Dense(t) => t.dims(),
            CpuWeight::Quantized(q) => (q.rows, q.cols),
        }
    }

    /// Rows.
    pub(crate) fn rows(&self) -> usize {
        self.dims().0
    }

    /// The f32 values, for the weights every operation but the products reads (norm scales,
    /// biases); `None` for a quantised matrix.
    pub(crate) fn dense(&self) -> Option<&CpuTensor> {
        match self {
            CpuWeight::Dense(t) => Some(t),
            CpuWeight::Quantized(_) => None,
        }
    }
}
