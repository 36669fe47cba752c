//! The Rust forward against Hugging Face transformers on tiny random-weight models
//! (LLaMA with GQA and llama3 RoPE scaling in f32; Qwen2 with biases, tied embeddings, bf16 weights
//! in sharded files; Mistral with linear RoPE scaling and f16 weights).
//!
//! Tolerance: 1e-4 absolute on every logit (logits are of order 1-4; the reference computes in f32
//! from the same stored weights).

mod common;

use common::{golden, load, max_abs_diff, FIXTURES};
use focusllm::{GenerateOptions, LanguageModel, LogitsFor};

const TOL: f32 = 1e-4;

#[test]
fn tokenizer_matches_python() {
    for name in FIXTURES {
        let p = load(name);
        for case in golden(name) {
            assert_eq!(p.tokenizer().encode(&case.text).unwrap(), case.ids, "{name}: {:?}", case.text);
        }
    }
}

#[test]
fn full_forward_matches_transformers_at_every_position() {
    for name in FIXTURES {
        let p = load(name);
        let model = p.model();
        let mut worst = 0.0f32;
        for case in golden(name) {
            let mut cache = model.new_cache();
            let logits = model.forward_one(&case.ids, &mut cache, LogitsFor::All).unwrap();
            assert_eq!(logits.rows, case.ids.len());
            for (pos, expected) in case.logits.iter().enumerate() {
                let d = max_abs_diff(logits.row(pos), expected);
                assert!(d < TOL, "{name} {:?} position {pos}: max |diff| {d}", case.text);
                worst = worst.max(d);
            }
        }
        eprintln!("MEASURED {name}: max |logit - transformers| = {worst:.2e}");
    }
}

#[test]
fn incremental_decoding_matches_full_forward() {
    for name in FIXTURES {
        let p = load(name);
        let model = p.model();
        for case in golden(name) {
            // Prefill a prefix, then feed the rest one token at a time through the KV cache.
            let split = case.ids.len() / 2;
            let mut cache = model.new_cache();
            let first = model.forward_one(&case.ids[..split], &mut cache, LogitsFor::All).unwrap();
            for pos in 0..split {
                assert!(max_abs_diff(first.row(pos), &case.logits[pos]) < TOL, "{name} prefix position {pos}");
            }
            for pos in split..case.ids.len() {
                let step = model.forward_one(&case.ids[pos..pos + 1], &mut cache, LogitsFor::Last).unwrap();
                let d = max_abs_diff(step.row(0), &case.logits[pos]);
                assert!(d < TOL, "{name} {:?} incremental position {pos}: max |diff| {d}", case.text);
            }
            assert_eq!(cache.len(), case.ids.len());
        }
    }
}

#[test]
fn greedy_continuation_matches_transformers() {
    for name in FIXTURES {
        let p = load(name);
        for case in golden(name) {
            let options = GenerateOptions { max_tokens: case.greedy.len(), stop_at_eos: false, ..Default::default() };
            let ids: Vec<u32> = p.generate_ids(&case.ids, &options).unwrap().map(|t| t.unwrap().id).collect();
            assert_eq!(ids, case.greedy, "{name} {:?}", case.text);
        }
    }
}
