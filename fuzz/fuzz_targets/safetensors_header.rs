//! Fuzzes the safetensors readers: `SafetensorsWeights::from_bytes` on the input, the same bytes
//! memory-mapped from a file (`from_files`), and the input as a sharded checkpoint's
//! `model.safetensors.index.json` (`from_index`), whose shards are the tiny Qwen2 fixture's four
//! files and the input itself. Every checkpoint that opens has each tensor read (`WeightSource`:
//! `tensor`, `shape`, conversion to f32) and its metadata looked up.
//!
//! The files live in a directory of the system's temporary folder made once per process
//! (`focusllm-fuzz-safetensors-<pid>`); index entries that name a path outside it (a `/` or `\`
//! in a shard name) are skipped, so that the fuzzer maps only files of that directory.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use focusllm_core::{SafetensorsWeights, WeightSource};
use libfuzzer_sys::fuzz_target;

/// The shards of `tests/fixtures/tiny-qwen2`, which its index names.
const SHARDS: [(&str, &[u8]); 4] = [
    (
        "model-00001-of-00004.safetensors",
        include_bytes!("../../tests/fixtures/tiny-qwen2/model-00001-of-00004.safetensors"),
    ),
    (
        "model-00002-of-00004.safetensors",
        include_bytes!("../../tests/fixtures/tiny-qwen2/model-00002-of-00004.safetensors"),
    ),
    (
        "model-00003-of-00004.safetensors",
        include_bytes!("../../tests/fixtures/tiny-qwen2/model-00003-of-00004.safetensors"),
    ),
    (
        "model-00004-of-00004.safetensors",
        include_bytes!("../../tests/fixtures/tiny-qwen2/model-00004-of-00004.safetensors"),
    ),
];

/// Where the input goes as a shard, and as the index.
const INPUT_SHARD: &str = "input.safetensors";
const INDEX: &str = "model.safetensors.index.json";

fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("focusllm-fuzz-safetensors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        for (name, bytes) in SHARDS {
            std::fs::write(dir.join(name), bytes).expect("write a shard");
        }
        dir
    })
}

/// Reads everything a checkpoint offers.
fn exercise(weights: &SafetensorsWeights) {
    let _ = weights.location();
    for key in ["format", "version", "total_size", "document.note"] {
        let _ = weights.metadata(key);
    }
    let names: Vec<String> = weights.names().map(str::to_string).collect();
    for name in &names {
        let shape = weights.shape(name);
        match weights.tensor(name) {
            Ok(Some(t)) => {
                assert_eq!(Some(&t.shape), shape.as_ref(), "tensor `{name}`: shape() and tensor() disagree");
                let values = t.to_f32();
                if t.has_consistent_size() {
                    assert_eq!(values.len(), t.len(), "tensor `{name}`: wrong number of values");
                }
                let _ = t.is_empty();
            }
            Ok(None) => panic!("tensor `{name}` is listed by names() but tensor() does not find it"),
            Err(_) => {}
        }
    }
    assert!(weights.tensor("no such tensor").is_ok_and(|t| t.is_none()));
    assert!(weights.shape("no such tensor").is_none());
}

/// Whether every shard the index names (if it parses) is a file name inside the scratch directory.
fn shards_stay_inside(text: &str) -> bool {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else { return true };
    let Some(map) = value.get("weight_map").and_then(|m| m.as_object()) else { return true };
    map.values().all(|v| v.as_str().is_none_or(|s| !s.contains(['/', '\\'])))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(weights) = SafetensorsWeights::from_bytes(Path::new("input.safetensors"), data) {
        exercise(&weights);
    }

    let dir = scratch_dir();
    let shard = dir.join(INPUT_SHARD);
    std::fs::write(&shard, data).expect("write the input shard");
    if let Ok(weights) = SafetensorsWeights::from_files(&shard, std::slice::from_ref(&shard)) {
        exercise(&weights);
    }

    if std::str::from_utf8(data).is_ok_and(|text| !shards_stay_inside(text)) {
        return;
    }
    let index = dir.join(INDEX);
    std::fs::write(&index, data).expect("write the index");
    if let Ok(weights) = SafetensorsWeights::from_index(&index) {
        exercise(&weights);
    }
});
