//! Shared by the device tests: getting a CUDA backend or a printed skip reason, and a CPU backend
//! (comparisons, references, fixtures and goldens come from `focusllm-testdata`).
#![allow(dead_code, unused_imports)] // each test crate uses a part

use focusllm_cpu::{CpuBackend, CpuOptions};
use focusllm_cuda::{CudaBackend, CudaOptions};
pub use focusllm_testdata::max_abs_diff;

/// Whether the run must have a CUDA device (`FOCUSLLM_REQUIRE_CUDA=1`, set on GPU machines).
pub fn cuda_required() -> bool {
    std::env::var("FOCUSLLM_REQUIRE_CUDA").as_deref() == Ok("1")
}

/// The CUDA backend on device 0, or `None` after printing why the test is skipped. Panics instead
/// when `FOCUSLLM_REQUIRE_CUDA=1`.
pub fn cuda(test: &str) -> Option<CudaBackend> {
    match CudaBackend::new(CudaOptions::default()) {
        Ok(b) => Some(b),
        Err(e) if cuda_required() => panic!("FOCUSLLM_REQUIRE_CUDA=1 but no CUDA backend: {e}"),
        Err(e) => {
            eprintln!("SKIPPED {test}: no CUDA device ({e})");
            None
        }
    }
}

/// A CPU backend of two threads.
pub fn cpu() -> CpuBackend {
    CpuBackend::new(CpuOptions { threads: Some(2) }).expect("cpu backend")
}
