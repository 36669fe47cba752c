//! The focusllm backend on portable GPUs through wgpu (in progress).
#![warn(missing_docs)]

use focusllm_core::{Error, Result};

/// Options of the wgpu backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WgpuOptions {
    /// Index of the adapter to use among those wgpu enumerates; `None` picks the high-performance one.
    pub adapter: Option<usize>,
}

/// The wgpu backend.
#[derive(Debug)]
pub struct WgpuBackend {
    _private: (),
}

impl WgpuBackend {
    /// Opens the adapter chosen by `options`.
    pub fn new(options: WgpuOptions) -> Result<Self> {
        let _ = options;
        Err(Error::Backend { backend: "wgpu", message: "the wgpu backend is not available yet".into() })
    }
}
