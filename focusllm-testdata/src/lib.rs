//! The committed test fixtures and golden files of the focusllm workspace, read once for the test
//! suites of every backend (the facade's CPU tests, wgpu, CUDA), so that each backend is held to
//! the same independent references with the same reader.
//!
//! - [`golden`]: Hugging Face transformers' logits and greedy tokens for the tiny fixture models
//!   (`scripts/make_tiny_fixtures.py`);
//! - [`focus_golden`]: the PyTorch reference of the FocusLLM algorithm (`scripts/focus_reference.py`)
//!   and [`focus_golden::check_run`], which runs the engine against one of its runs;
//! - [`random_checkpoint`]: model directories of seeded random weights, for the tests and examples
//!   that need a model of real size where the real weights cannot be had.
//! - [`conformance`]: the backend conformance suite every backend's tests run (each operation
//!   against an f64 host implementation, the contract's typed errors, whole models against the
//!   goldens above), with its shared helpers.
#![warn(missing_docs)]

pub mod conformance;
pub mod focus_golden;
pub mod golden;
pub mod random_checkpoint;

use std::path::PathBuf;

/// The tiny random-weight models made by `scripts/make_tiny_fixtures.py`: LLaMA (GQA, llama3 RoPE
/// scaling, f32), Qwen2 (biases, tied embeddings, bf16 in shards), Mistral (linear RoPE scaling, f16).
pub const FIXTURES: [&str; 3] = ["tiny-llama", "tiny-qwen2", "tiny-mistral"];

/// The folder of the fixture `name` under the workspace's `tests/fixtures`: taken from
/// `FOCUSLLM_FIXTURES` when set (test binaries carried to another machine), else the workspace
/// the tests were built in, else `tests/fixtures` under the current directory.
pub fn fixture_dir(name: &str) -> PathBuf {
    fixtures_root().join(name)
}

fn fixtures_root() -> PathBuf {
    if let Ok(dir) = std::env::var("FOCUSLLM_FIXTURES") {
        return PathBuf::from(dir);
    }
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    if built.is_dir() {
        return built;
    }
    PathBuf::from("tests/fixtures")
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Whether a missing prerequisite must fail the test instead of skipping it (`.ci/run` sets
/// `FOCUSLLM_TEST_STRICT=1`).
pub fn strict() -> bool {
    std::env::var("FOCUSLLM_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// Skips (printing why) or, in strict mode, fails when a prerequisite is missing.
pub fn skip_or_fail(test: &str, why: &str) {
    if strict() {
        panic!("{test}: {why} (FOCUSLLM_TEST_STRICT=1 forbids skipping)");
    }
    eprintln!("SKIPPED {test}: {why}");
}
