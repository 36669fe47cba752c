//! Fuzzes the loading of FocusLLM adapters: the input is the bytes of a safetensors file of
//! candidate projections (`model.layers.{l}.self_attn.beacon_{q,k,v,o}_proj` and
//! `model.layers.{l}.mlp.beacon_{up,down}_proj`, each a full `.weight` (+ `.bias`) or a low-rank
//! `.lora_a` / `.lora_b` pair), given to `Pipeline::load_adapter_bytes` of two tiny models loaded
//! once on the CPU backend: the LLaMA fixture (f32, no biases) and the sharded Qwen2 fixture
//! (bf16, q/k/v biases). An adapter that loads must then work: a short FocusLLM prefill (two
//! chunks of memory, candidates from the loaded projections) and one decoding step.
#![no_main]

use std::cell::RefCell;

use focusllm_core::{prefill, Control, FocusConfig, Pipeline};
use focusllm_cpu::{CpuBackend, CpuOptions};
use libfuzzer_sys::fuzz_target;

const MODELS: [&str; 2] = [
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-llama"),
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-qwen2"),
];

thread_local! {
    static PIPELINES: RefCell<Vec<Pipeline<CpuBackend>>> = RefCell::new(
        MODELS
            .iter()
            .map(|dir| {
                let backend = CpuBackend::new(CpuOptions { threads: Some(1) }).expect("a one-thread CPU backend");
                Pipeline::load(dir, backend).unwrap_or_else(|e| panic!("cannot load the fixture {dir}: {e}"))
            })
            .collect(),
    );
}

/// A prefill that reads memory with FocusLLM: 40 tokens, a local window of 16, chunks of 12.
fn focus_prefill(pipeline: &Pipeline<CpuBackend>) {
    let model = pipeline.model();
    let vocab = model.config().vocab_size as u32;
    let prompt: Vec<u32> = (0..40u32).map(|i| (i * 37 + 5) % vocab).collect();
    let focus = FocusConfig { local_window: 16, chunk_size: 12, query_len: Some(6), ..FocusConfig::default() };
    let (mut decoder, logits) =
        prefill(model, &prompt, Some(&focus), Control::default()).expect("a prefill with a loaded adapter");
    assert_eq!(logits.len(), vocab as usize);
    let logits = decoder.step(1).expect("a decoding step with a loaded adapter");
    assert_eq!(logits.len(), vocab as usize);
}

fuzz_target!(|data: &[u8]| {
    PIPELINES.with_borrow_mut(|pipelines| {
        for pipeline in pipelines.iter_mut() {
            let before = pipeline.model().candidates_fingerprint();
            match pipeline.load_adapter_bytes(data) {
                Ok(0) => assert_eq!(pipeline.model().candidates_fingerprint(), None),
                Ok(_) => focus_prefill(pipeline),
                // A failed load leaves the projections the model had.
                Err(_) => assert_eq!(pipeline.model().candidates_fingerprint(), before),
            }
        }
    });
});
