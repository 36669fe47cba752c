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

/// A JSON array of token ids.
pub(crate) fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}
