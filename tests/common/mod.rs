//! Helpers shared by the integration tests: fixture paths, golden files, a CPU backend.
#![allow(dead_code)]

pub mod focus_golden;

use std::path::{Path, PathBuf};

use focusllm::cpu::{CpuBackend, CpuOptions};
use focusllm::Pipeline;

/// The tiny random-weight models made by `scripts/make_tiny_fixtures.py`.
pub const FIXTURES: [&str; 3] = ["tiny-llama", "tiny-qwen2", "tiny-mistral"];

pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn cpu() -> CpuBackend {
    CpuBackend::new(CpuOptions { threads: Some(2) }).expect("cpu backend")
}

pub fn load(name: &str) -> Pipeline<CpuBackend> {
    Pipeline::load(fixture_dir(name), cpu()).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// One golden case: text, its token ids, transformers' logits at every position, greedy tokens.
pub struct Case {
    pub text: String,
    pub ids: Vec<u32>,
    pub logits: Vec<Vec<f32>>,
    pub greedy: Vec<u32>,
}

pub fn golden(name: &str) -> Vec<Case> {
    let path = fixture_dir(name).join("golden.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            ids: ids(&c["ids"]),
            logits: c["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
                .collect(),
            greedy: ids(&c["greedy"]),
        })
        .collect()
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

/// The cached default model (SmolLM2-135M-Instruct Q4_1 GGUF), or `None` after printing why the
/// test skips. It is fetched by `scripts/fetch_model.sh` (which `.ci/run` calls); tests never download.
pub fn default_model(test: &str) -> Option<PathBuf> {
    let found = focusllm::default_model::find();
    if found.is_none() {
        skip_or_fail(test, &format!("the default model is not cached at {} (run scripts/fetch_model.sh)",
            focusllm::default_model::cached_path().display()));
    }
    found
}
