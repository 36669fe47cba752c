//! The FocusLLM engine running on wgpu against the independent PyTorch reference of FocusLLM (docs/algorithm.md)
//! (`scripts/focus_reference.py`, goldens in the workspace's `tests/fixtures/focus/`): the tiny
//! LLaMA fixture, 127 tokens with L = 16, S = 12, Q = 6 (10 memory chunks, the last shorter), in
//! every decode mode and both candidate orders, with copied, with full (adapter) and with low-rank
//! candidate projections; every step's logits and the greedy tokens.
//!
//! Tolerance (absolute, logits of order 1-5): 1e-4 with f32 weights, as the CPU backend; 2e-2
//! with f16 weights (tiny-llama's f32 weights rounded to f16; see `models.rs`).

mod common;

use common::focus_golden::{check_run, golden, load_tiny_adapter, load_tiny_lora};
use common::{backend_with, fixture_dir};
use focusllm_core::Pipeline;
use focusllm_wgpu::{WeightPrecision, WgpuBackend, WgpuConfig};

/// Weight precisions and their tolerances.
const PRECISIONS: [(WeightPrecision, f32); 2] = [(WeightPrecision::F32, 1e-4), (WeightPrecision::Auto, 2e-2)];

fn tiny_llama(precision: WeightPrecision) -> Option<Pipeline<WgpuBackend>> {
    Some(Pipeline::load(fixture_dir("tiny-llama"), backend_with(WgpuConfig { precision, ..Default::default() })?).unwrap())
}

#[test]
fn focus_engine_matches_reference_in_every_mode() {
    let g = golden("tiny-llama");
    assert!(g.runs.len() >= 7, "{} runs", g.runs.len());
    for (precision, tol) in PRECISIONS {
        for adapter in [false, true] {
            let Some(mut p) = tiny_llama(precision) else { return };
            if adapter {
                load_tiny_adapter(&mut p);
            }
            let f16 = p.model().backend().f16_weights();
            for run in g.runs.iter().filter(|r| r.adapter == adapter) {
                // 3 chunks per batch: the 10 chunks run as 4 packed batches.
                let worst = check_run(p.model(), &g, run, 3, tol);
                eprintln!("MEASURED focus {} (f16 weights {f16}): max |logit - reference| = {worst:.3e}", run.name);
            }
        }
    }
}

#[test]
fn low_rank_adapter_matches_reference() {
    // The reference merges W + lora_b @ lora_a into full matrices; the engine applies the delta unmerged.
    let g = golden("tiny-llama-lora");
    for (precision, tol) in PRECISIONS {
        let Some(mut p) = tiny_llama(precision) else { return };
        load_tiny_lora(&mut p);
        let f16 = p.model().backend().f16_weights();
        for run in &g.runs {
            let worst = check_run(p.model(), &g, run, 3, tol);
            eprintln!("MEASURED low-rank {} (f16 weights {f16}): max |logit - reference| = {worst:.3e}", run.name);
        }
    }
}
