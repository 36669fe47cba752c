//! The FocusLLM engine on the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against the
//! independent PyTorch reference (`scripts/focus_reference.py smollm2`): a ~6000-token passkey-style
//! input, local window = chunk size = 1024, query 256 (5 memory chunks), the logits after prefill and
//! after each of 5 greedy tokens of exact decoding.
//!
//! Tolerance: 1e-3 absolute on logits of magnitude ~10-25 (both sides f32 over the same dequantised
//! weights; the difference is summation order through 30 layers; measured 1.4e-4). The same input
//! with the shipped adapter (`focusllm-adapters`), cached-local decoding, has the same tolerance (measured
//! 7.9e-5).

mod common;

use common::focus_golden::{check_run, golden};
use common::{cpu, default_model};

#[test]
fn smollm2_exact_decoding_matches_reference() {
    let Some(path) = default_model("smollm2_exact_decoding_matches_reference") else { return };
    let pipeline = focusllm::Pipeline::load(&path, cpu()).unwrap();
    let g = golden("smollm2");
    assert!(g.ids.len() > 5000, "the golden input has {} tokens", g.ids.len());
    let worst = check_run(pipeline.model(), &g, &g.runs[0], 4, 1e-3);
    eprintln!("smollm2 focus exact: max |logit diff| vs reference {worst:.2e}");
}

#[test]
fn smollm2_with_the_shipped_adapter_matches_reference() {
    // The reference merges the low-rank deltas into full matrices; the engine applies them unmerged.
    let Some(path) = default_model("smollm2_with_the_shipped_adapter_matches_reference") else { return };
    let mut pipeline = focusllm::Pipeline::load(&path, cpu()).unwrap();
    // The adapter trained by `training/train.py` for the default model, as a crates.io user gets it.
    let loaded = pipeline.load_adapter_bytes(focusllm_adapters::SMOLLM2_135M_INSTRUCT).unwrap();
    assert_eq!(loaded, 4 * pipeline.model().config().num_layers, "q, k, v and o of every layer");
    let g = golden("smollm2-adapter");
    let worst = check_run(pipeline.model(), &g, &g.runs[0], 4, 1e-3);
    eprintln!("smollm2 focus cached-local with the adapter: max |logit diff| vs reference {worst:.2e}");
}
