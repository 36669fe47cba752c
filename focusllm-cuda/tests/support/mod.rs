//! Shared by the device tests: getting a CUDA backend or a printed skip reason, the CPU reference,
//! fixture paths, comparisons.
#![allow(dead_code)]

use std::path::PathBuf;

use focusllm_cpu::{CpuBackend, CpuOptions};
use focusllm_cuda::{CudaBackend, CudaOptions};

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

pub fn cpu() -> CpuBackend {
    CpuBackend::new(CpuOptions { threads: Some(2) }).expect("cpu backend")
}

/// The tiny HF fixtures: `FOCUSLLM_FIXTURES` if set (binaries carried to another machine), else
/// the workspace's `tests/fixtures` where it was built, else `tests/fixtures` under the current
/// directory.
pub fn fixtures() -> PathBuf {
    if let Ok(dir) = std::env::var("FOCUSLLM_FIXTURES") {
        return PathBuf::from(dir);
    }
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    if built.is_dir() {
        return built;
    }
    PathBuf::from("tests/fixtures")
}

/// Largest |a - b| relative to max(1, |b|).
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / y.abs().max(1.0)).fold(0.0, f32::max)
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
