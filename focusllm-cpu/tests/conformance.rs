//! The backend conformance suite (`focusllm_testdata::conformance`) on the CPU backend: every
//! operation against its f64 host reference, the contract's typed errors, and the tiny models
//! against the transformers and FocusLLM goldens. The CPU keeps every weight as the checkpoint
//! holds it (`Storage::Exact`).

use focusllm_cpu::{CpuBackend, CpuOptions};

/// A CPU backend of two threads (the CI machine's cores).
fn cpu() -> Option<CpuBackend> {
    Some(CpuBackend::new(CpuOptions { threads: Some(2) }).expect("cpu backend"))
}

focusllm_testdata::conformance_tests!(cpu());
