//! The focusllm backend on NVIDIA GPUs through CUDA (in progress).
#![warn(missing_docs)]

use focusllm_core::{Error, Result};

/// Options of the cuda backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CudaOptions {
    /// Ordinal of the CUDA device to use.
    pub ordinal: usize,
}

/// The cuda backend.
#[derive(Debug)]
pub struct CudaBackend {
    _private: (),
}

impl CudaBackend {
    /// Opens the adapter chosen by `options`.
    pub fn new(options: CudaOptions) -> Result<Self> {
        let _ = options;
        Err(Error::Backend { backend: "cuda", message: "the cuda backend is not available yet".into() })
    }
}
