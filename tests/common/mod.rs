//! Helpers shared by the integration tests: a CPU backend, the default model, and the workspace's
//! fixture and golden-file readers (`focusllm-testdata`).
#![allow(dead_code, unused_imports)] // each test crate uses a part

use std::path::PathBuf;

use focusllm::cpu::{CpuBackend, CpuOptions};
use focusllm::Pipeline;
pub use focusllm_testdata::golden::{golden, Case};
pub use focusllm_testdata::{fixture_dir, focus_golden, max_abs_diff, skip_or_fail, strict, FIXTURES};

pub fn cpu() -> CpuBackend {
    CpuBackend::new(CpuOptions { threads: Some(2) }).expect("cpu backend")
}

pub fn load(name: &str) -> Pipeline<CpuBackend> {
    Pipeline::load(fixture_dir(name), cpu()).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// The cached default model (SmolLM2-135M-Instruct Q4_1 GGUF), or `None` after printing why the
/// test skips. It is fetched by `scripts/fetch_model.sh` (which `.ci/run` calls); tests never download.
pub fn default_model(test: &str) -> Option<PathBuf> {
    let found = focusllm::default_model::find();
    if found.is_none() {
        skip_or_fail(
            test,
            &format!(
                "the default model is not cached at {} (run scripts/fetch_model.sh)",
                focusllm::default_model::cached_path().display()
            ),
        );
    }
    found
}
