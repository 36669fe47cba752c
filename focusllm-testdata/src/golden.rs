//! Hugging Face transformers' outputs for the tiny fixture models (`golden.json` beside each).

use serde_json::Value;

use crate::fixture_dir;

/// One golden case: text, its token ids, transformers' logits at every position, greedy tokens.
pub struct Case {
    /// The prompt.
    pub text: String,
    /// Its token ids, as Python's tokenizer gives them.
    pub ids: Vec<u32>,
    /// The logits at every position.
    pub logits: Vec<Vec<f32>>,
    /// The greedy continuation.
    pub greedy: Vec<u32>,
}

/// The cases of the fixture `name`.
pub fn golden(name: &str) -> Vec<Case> {
    let path = fixture_dir(name).join("golden.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_slice(&bytes).unwrap();
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

/// One case of a golden written as `STEM.json` (`{"cases": [{"name": ..., ...}]}`) beside
/// `STEM.safetensors` (the f32 tensor `logits.<name>` of each case): the case's JSON object and
/// those logits, flattened.
pub struct LogitCase {
    /// The case's JSON object (its `name`, `ids`, `greedy`, ...).
    pub meta: Value,
    /// Its logits, row-major.
    pub logits: Vec<f32>,
}

/// The cases of the golden `dir/STEM.json` and `dir/STEM.safetensors`.
pub fn logit_cases(dir: &std::path::Path, stem: &str) -> Vec<LogitCase> {
    let read = |ext: &str| {
        let path = dir.join(format!("{stem}.{ext}"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let meta: Value = serde_json::from_slice(&read("json")).unwrap();
    let bytes = read("safetensors");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    meta["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let view = tensors.tensor(&format!("logits.{}", c["name"].as_str().unwrap())).unwrap();
            let logits = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            LogitCase { meta: c.clone(), logits }
        })
        .collect()
}

/// A JSON array of token ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}
