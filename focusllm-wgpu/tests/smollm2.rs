//! The default model (SmolLM2-135M-Instruct, a Q4_1 GGUF with a Q8_0 embedding table) on wgpu
//! against the CPU backend: a short prompt's 8-token greedy continuation must be the same, and the
//! prompt's last logits close (measured and printed as `MEASURED`). Both backends keep the GGUF's
//! blocks and compute in f32 from the same dequantised values, so only summation order differs.
//!
//! Slow on software adapters: the 8 decode steps of a 135M model dominate.
//!
//! Needs the model in the cache (`scripts/fetch_model.sh`); without it the test prints why and
//! returns, or fails under `FOCUSLLM_TEST_STRICT=1`.

mod common;

use focusllm::default_model;
use focusllm_core::{GenerateOptions, LanguageModel, LogitsFor, Pipeline};
use focusllm_cpu::{CpuBackend, CpuOptions};

/// Logits of order 10-25, in f32 from the same values on both sides (measured 5.3e-5 on lavapipe;
/// matrices rounded to f16, as before the shaders read blocks, moved them by a few hundredths).
const LOGIT_TOL: f32 = 1e-3;

#[test]
fn greedy_continuation_equals_cpu_backend() {
    let Some(path) = default_model::find() else {
        assert!(
            std::env::var("FOCUSLLM_TEST_STRICT").map_or(true, |v| v != "1"),
            "FOCUSLLM_TEST_STRICT=1 and the default model is not cached (run scripts/fetch_model.sh)"
        );
        eprintln!("skipping: the default model is not cached (run scripts/fetch_model.sh)");
        return;
    };
    let Some(gpu) = common::backend() else { return };
    let gpu = Pipeline::load_gguf(&path, gpu).unwrap();
    let cpu = Pipeline::load_gguf(&path, CpuBackend::new(CpuOptions { threads: Some(2) }).unwrap()).unwrap();
    // Four tokens: short enough for the matrix-vector kernels, and quick on software adapters.
    let prompt = cpu.tokenizer().encode("The capital of France").unwrap();

    let last = |logits: focusllm_core::Logits| logits.last().unwrap().to_vec();
    let mut c1 = cpu.model().new_cache();
    let mut c2 = gpu.model().new_cache();
    let want = last(cpu.model().forward_one(&prompt, &mut c1, LogitsFor::Last).unwrap());
    let got = last(gpu.model().forward_one(&prompt, &mut c2, LogitsFor::Last).unwrap());
    let d = common::max_abs_diff(&got, &want);
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    eprintln!("MEASURED smollm2: max |logit wgpu - cpu| = {d:.3e} (max |logit| {scale:.1})");
    assert!(d < LOGIT_TOL, "prompt logits differ by {d}");

    let options = GenerateOptions { max_tokens: 8, stop_at_eos: false, ..Default::default() };
    let run = |p: &dyn LanguageModel| -> Vec<u32> {
        p.generate_ids(&prompt, &options).unwrap().map(|t| t.unwrap().id).collect()
    };
    let (want, got) = (run(&cpu), run(&gpu));
    eprintln!("greedy continuation: {:?}", cpu.tokenizer().decode(&want));
    assert_eq!(got, want);
}
