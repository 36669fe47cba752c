//! Golden files of the FocusLLM reference (`scripts/focus_reference.py`, in `tests/fixtures/focus`):
//! per run, the logits after prefill and after each greedy token, and the tokens.

use focusllm_core::{
    argmax, prefill, Backend, CandidateOrder, Control, DecodeMode, FocusConfig, Model, Pipeline, SafetensorsWeights,
};

use crate::golden::ids;
use crate::{fixture_dir, max_abs_diff};

/// One reference run: its decode mode, candidate order and projections, and what it produced.
pub struct Run {
    /// The run's name in the golden file.
    pub name: String,
    /// Whether the run used the reference's candidate projections rather than copies.
    pub adapter: bool,
    /// Candidate order of the local forward.
    pub order: CandidateOrder,
    /// Decode mode.
    pub mode: DecodeMode,
    /// The greedy tokens.
    pub greedy: Vec<u32>,
    /// The logits after prefill and after each greedy token.
    pub logits: Vec<Vec<f32>>,
}

/// A golden file: one input, the FocusLLM sizes, and the runs over it.
pub struct Golden {
    /// The input's token ids.
    pub ids: Vec<u32>,
    /// Local window, chunk size and query length of every run (the rest default).
    pub config: FocusConfig,
    /// The runs.
    pub runs: Vec<Run>,
}

/// The golden file `name` (`tests/fixtures/focus/{name}.json` and `.safetensors`).
pub fn golden(name: &str) -> Golden {
    let dir = fixture_dir("focus");
    let read = |file: String| std::fs::read(dir.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let meta: serde_json::Value = serde_json::from_slice(&read(format!("{name}.json"))).unwrap();
    let bytes = read(format!("{name}.safetensors"));
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
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

/// Prefill and greedy decoding through the engine with the run's mode and order, every position's
/// logits checked against the reference within `tol`; returns the largest difference seen.
pub fn check_run<B: Backend>(model: &Model<B>, g: &Golden, run: &Run, chunk_batch: usize, tol: f32) -> f32 {
    let config = FocusConfig { decode: run.mode, order: run.order, chunk_batch, ..g.config.clone() };
    let (mut decoder, mut logits) = prefill(model, &g.ids, Some(&config), Control::default()).unwrap();
    let mut worst = 0.0f32;
    for step in 0..=run.greedy.len() {
        let d = max_abs_diff(&logits, &run.logits[step]);
        worst = worst.max(d);
        assert!(d < tol, "{} (batch {chunk_batch}) step {step}: max |diff| {d}", run.name);
        if step == run.greedy.len() {
            break;
        }
        let t = argmax(&logits) as u32;
        assert_eq!(t, run.greedy[step], "{} step {step}", run.name);
        logits = decoder.step(t).unwrap();
    }
    worst
}

/// Gives the tiny LLaMA fixture the reference's full candidate projections
/// (`tiny-llama-adapter.safetensors`: q, k, v, o and the MLP's up and down in every layer), as the
/// golden runs marked `adapter` used them.
pub fn load_tiny_adapter<B: Backend>(p: &mut Pipeline<B>) {
    let file = fixture_dir("focus").join("tiny-llama-adapter.safetensors");
    let src = SafetensorsWeights::from_files(&file, std::slice::from_ref(&file)).unwrap();
    let n = p.model_mut().load_candidate_projections(&src).unwrap();
    assert_eq!(n, 6 * p.model().config().num_layers);
}

/// Gives the tiny LLaMA fixture the reference's low-rank candidate projections
/// (`tiny-llama-lora-adapter.safetensors`: `lora_a`/`lora_b` on q, k, v and o), which the
/// `tiny-llama-lora` golden file used (merged into full matrices on the reference's side).
pub fn load_tiny_lora<B: Backend>(p: &mut Pipeline<B>) {
    let n = p.load_adapter(fixture_dir("focus").join("tiny-llama-lora-adapter.safetensors")).unwrap();
    assert_eq!(n, 4 * p.model().config().num_layers);
}
