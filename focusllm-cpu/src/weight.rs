//! `CpuWeight`: a checkpoint tensor as the CPU backend keeps it.

use crate::half_matrix::HalfMatrix;
use crate::quantized::QuantMatrix;
use crate::tensor::CpuTensor;

/// A weight on the CPU: f32 values, an f16/bf16 matrix kept in 16 bits, or a block-quantised
/// matrix (Q8_0, Q4_0, Q4_1 from a GGUF file) kept in its blocks, so that decoding reads a
/// fraction of the bytes of an f32 copy.
#[derive(Debug, Clone, PartialEq)]
pub enum CpuWeight {
    /// f32 values (f32 checkpoints, vectors, and matrices of no other kind).
    Dense(CpuTensor),
    /// An f16 or bf16 `[rows, cols]` matrix.
    Half(HalfMatrix),
    /// A block-quantised `[rows, cols]` matrix.
    Quantized(QuantMatrix),
}

impl CpuWeight {
    /// `(rows, cols)`; a vector is one row.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            CpuWeight::Dense(t) => t.dims(),
            CpuWeight::Half(h) => (h.rows, h.cols),
            CpuWeight::Quantized(q) => (q.rows, q.cols),
        }
    }

    /// Rows.
    pub(crate) fn rows(&self) -> usize {
        self.dims().0
    }

    /// The f32 values, for the weights every operation but the products reads (norm scales,
    /// biases); `None` for a half-precision or quantised matrix.
    pub(crate) fn dense(&self) -> Option<&CpuTensor> {
        match self {
            CpuWeight::Dense(t) => Some(t),
            CpuWeight::Half(_) | CpuWeight::Quantized(_) => None,
        }
    }
}
