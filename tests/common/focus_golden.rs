//! Golden files of the FocusLLM reference (`scripts/focus_reference.py`): per run, the logits after
//! prefill and after each greedy token, and the tokens.

use focusllm::focus::{self, CandidateOrder, DecodeMode, FocusConfig};
use focusllm::sampling::argmax;
use focusllm::{Backend, Control, Model};

use super::{fixture_dir, max_abs_diff};

pub struct Run {
    pub name: String,
    pub adapter: bool,
    pub order: CandidateOrder,
    pub mode: DecodeMode,
    pub greedy: Vec<u32>,
    pub logits: Vec<Vec<f32>>,
}

pub struct Golden {
    pub ids: Vec<u32>,
    pub config: FocusConfig,
    pub runs: Vec<Run>,
}

pub fn golden(name: &str) -> Golden {
    let dir = fixture_dir("focus");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join(format!("{name}.safetensors"))).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
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
            let data: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Run {
                adapter: r["weights"] == "adapter",
                order: if r["order"] == "sink_first" { CandidateOrder::SinkFirst } else { CandidateOrder::CandidatesFirst },
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
    let (mut decoder, mut logits) = focus::prefill(model, &g.ids, &config, Control::default()).unwrap();
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
