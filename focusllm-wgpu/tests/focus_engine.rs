//! The FocusLLM engine running on wgpu against the independent PyTorch reference of DESIGN §2
//! (`scripts/focus_reference.py`, goldens in the workspace's `tests/fixtures/focus/`): the tiny
//! LLaMA fixture, 127 tokens with L = 16, S = 12, Q = 6 (10 memory chunks, the last shorter), in
//! every decode mode and both candidate orders, with copied and with trained-style (adapter)
//! candidate projections; every step's logits and the greedy tokens.
//!
//! Tolerance (absolute, logits of order 1-5): 1e-4 with f32 weights, as the CPU backend; 2e-2
//! with f16 weights (tiny-llama's f32 weights rounded to f16; see `models.rs`).

mod common;

use common::{backend_with, fixture_dir, max_abs_diff};
use focusllm_core::focus::{self, CandidateOrder, DecodeMode, FocusConfig};
use focusllm_core::sampling::argmax;
use focusllm_core::{Control, Pipeline, SafetensorsWeights};
use focusllm_wgpu::{WeightPrecision, WgpuBackend, WgpuConfig};

struct Run {
    name: String,
    adapter: bool,
    order: CandidateOrder,
    mode: DecodeMode,
    greedy: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

struct Golden {
    ids: Vec<u32>,
    config: FocusConfig,
    runs: Vec<Run>,
}

fn golden(name: &str) -> Golden {
    let dir = fixture_dir("focus");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join(format!("{name}.safetensors"))).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids =
        |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
    let n = |k: &str| meta[k].as_u64().unwrap() as usize;
    let config = FocusConfig {
        local_window: n("local_window"),
        chunk_size: n("chunk_size"),
        query_len: Some(n("query_len")),
        ..FocusConfig::default()
    };
    let runs = meta["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap().to_string();
            let t = tensors.tensor(&name).unwrap();
            let vocab = t.shape()[1];
            let data: Vec<f32> =
                t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Run {
                adapter: r["weights"] == "adapter",
                order: if r["order"] == "sink_first" {
                    CandidateOrder::SinkFirst
                } else {
                    CandidateOrder::CandidatesFirst
                },
                mode: match r["mode"].as_str().unwrap() {
                    "exact" => DecodeMode::Exact,
                    "cached_local" => DecodeMode::CachedLocal,
                    "frozen" => DecodeMode::FrozenMemory,
                    "min_entropy" => DecodeMode::MinEntropy,
                    other => panic!("unknown mode {other}"),
                },
                greedy: ids(&r["greedy"]),
                logits: data.chunks(vocab).map(<[f32]>::to_vec).collect(),
                name,
            }
        })
        .collect();
    Golden { ids: ids(&meta["ids"]), config, runs }
}

fn tiny_llama(config: WgpuConfig, adapter: bool) -> Option<Pipeline<WgpuBackend>> {
    let mut p = Pipeline::load(fixture_dir("tiny-llama"), backend_with(config)?).unwrap();
    if adapter {
        let file = fixture_dir("focus").join("tiny-llama-adapter.safetensors");
        let src = SafetensorsWeights::from_files(&file, std::slice::from_ref(&file)).unwrap();
        let n = p.model_mut().load_candidate_projections(&src).unwrap();
        assert_eq!(n, 6 * p.model().config().num_layers);
    }
    Some(p)
}

#[test]
fn focus_engine_matches_reference_in_every_mode() {
    let g = golden("tiny-llama");
    assert!(g.runs.len() >= 7, "{} runs", g.runs.len());
    for (precision, tol) in [(WeightPrecision::F32, 1e-4f32), (WeightPrecision::Auto, 2e-2)] {
        for adapter in [false, true] {
            let Some(p) = tiny_llama(WgpuConfig { precision, ..Default::default() }, adapter) else { return };
            let f16 = p.model().backend().f16_weights();
            for run in g.runs.iter().filter(|r| r.adapter == adapter) {
                // 3 chunks per batch: the 10 chunks run as 4 packed batches.
                let config = FocusConfig { decode: run.mode, order: run.order, chunk_batch: 3, ..g.config.clone() };
                let (mut decoder, mut logits) = focus::prefill(p.model(), &g.ids, &config, Control::default()).unwrap();
                let mut worst = 0.0f32;
                for step in 0..=run.greedy.len() {
                    let d = max_abs_diff(&logits, &run.logits[step]);
                    worst = worst.max(d);
                    assert!(d < tol, "{} (f16 weights {f16}) step {step}: max |diff| {d}", run.name);
                    if step == run.greedy.len() {
                        break;
                    }
                    let t = argmax(&logits) as u32;
                    assert_eq!(t, run.greedy[step], "{} (f16 weights {f16}) step {step}", run.name);
                    logits = decoder.step(t).unwrap();
                }
                eprintln!("MEASURED focus {} (f16 weights {f16}): max |logit - reference| = {worst:.3e}", run.name);
            }
        }
    }
}
