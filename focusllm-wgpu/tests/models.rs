//! The whole model with weights split across storage bindings (a wgpu limit) gives the logits of
//! whole weights. The tiny models against the transformers and FocusLLM goldens (full forward,
//! incremental decoding, greedy continuations, packed batches, every FocusLLM decode mode) are
//! the conformance suite's model checks (`conformance.rs`).

mod common;

use common::{backend_with, fixture_dir, golden, max_abs_diff};
use focusllm_core::{LogitsFor, Pipeline};
use focusllm_testdata::conformance::SAME_WEIGHTS_TOL;
use focusllm_wgpu::{WgpuBackend, WgpuConfig};

fn load(name: &str, config: WgpuConfig) -> Option<Pipeline<WgpuBackend>> {
    let backend = backend_with(config)?;
    Some(Pipeline::load(fixture_dir(name), backend).unwrap_or_else(|e| panic!("loading {name}: {e}")))
}

#[test]
fn weights_split_across_bindings_give_the_same_logits() {
    // tiny-qwen2 ties its output head to the embedding table, so the split table serves both the
    // lookup and the last projection.
    for name in ["tiny-llama", "tiny-qwen2"] {
        let Some(whole) = load(name, WgpuConfig::default()) else { return };
        let split = load(name, WgpuConfig { max_binding_bytes: Some(2048), ..Default::default() }).unwrap();
        let case = &golden(name)[0];
        let run = |p: &Pipeline<WgpuBackend>| {
            let mut cache = p.model().new_cache();
            p.model().forward_one(&case.ids, &mut cache, LogitsFor::All).unwrap()
        };
        let d = max_abs_diff(&run(&whole).data, &run(&split).data);
        assert!(d < SAME_WEIGHTS_TOL, "{name}: split vs whole weights {d}");
    }
}
