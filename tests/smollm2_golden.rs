//! The default model (SmolLM2-135M-Instruct, Q4_1 GGUF) loaded through `Pipeline::load` on the CPU
//! backend against Hugging Face transformers loading the same file (`gguf_file=`), from the
//! fixture `scripts/make_smollm2_golden.py` writes (tests/fixtures/smollm2): token ids, the chat
//! template's rendering, last-position logits and 20-token greedy continuations of a plain prompt,
//! a chat-templated one and one of ~2000 tokens.
//!
//! Tolerance on logits: `LOGIT_TOL` = 5e-4 absolute (logits reach magnitude 19-30 here). Both
//! sides compute in f32 from the same dequantised values (the Rust dequantiser is bit-exact against
//! `gguf`, and the q/k un-permutation is exact), so differences come only from f32 summation order:
//! the CPU backend keeps the Q4_1/Q8_0 blocks and multiplies the quants directly for up to 16 rows
//! (a decoding step, the 5-token prompt) or dequantises panels for the dense kernel (longer
//! prompts). Measured on the 2-core CI machine (CPU backend, 2 threads), prefill / decoding step:
//! plain 5.8e-5 / 5.8e-5, chat 8.1e-5 / 7.3e-5, long (2214 tokens) 6.0e-5 / 6.4e-5; the tolerance
//! leaves ~6x headroom for other SIMD widths and thread counts.

mod common;

use common::{default_model, max_abs_diff};
use focusllm::gguf::GgufFile;
use focusllm::{prefill, ChatMessage, Control, Pipeline};
use focusllm_testdata::golden::{ids, logit_cases, LogitCase};

const LOGIT_TOL: f32 = 5e-4;

struct Case {
    name: String,
    text: String,
    messages: Option<Vec<ChatMessage>>,
    ids: Vec<u32>,
    greedy: Vec<u32>,
    logits: Vec<f32>,
}

fn golden() -> Vec<Case> {
    logit_cases(&common::fixture_dir("smollm2"), "golden")
        .into_iter()
        .map(|LogitCase { meta: c, logits }| Case {
            name: c["name"].as_str().unwrap().to_string(),
            text: c["text"].as_str().unwrap().to_string(),
            messages: c.get("messages").map(|m| {
                m.as_array()
                    .unwrap()
                    .iter()
                    .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
                    .collect()
            }),
            ids: ids(&c["ids"]),
            greedy: ids(&c["greedy"]),
            logits,
        })
        .collect()
}

#[test]
fn tokenizer_and_chat_template_match_transformers() {
    let Some(path) = default_model("tokenizer_and_chat_template_match_transformers") else { return };
    let file = GgufFile::open(&path).unwrap();
    let tokenizer = file.tokenizer().unwrap();
    let template = file.chat_template().expect("SmolLM2 has a chat template").unwrap();
    let cases = golden();
    assert_eq!(cases.len(), 3);
    assert!(cases.iter().any(|c| c.ids.len() > 1900), "the long prompt must have ~2000 tokens");
    for case in &cases {
        assert_eq!(tokenizer.encode(&case.text).unwrap(), case.ids, "{}", case.name);
        if let Some(messages) = &case.messages {
            assert_eq!(template.render(messages, true).unwrap(), case.text, "{}", case.name);
        }
    }
    assert!(cases.iter().any(|c| c.messages.is_some()));
}

#[test]
fn logits_and_greedy_tokens_match_transformers() {
    let Some(path) = default_model("logits_and_greedy_tokens_match_transformers") else { return };
    let pipeline = Pipeline::load(&path, common::cpu()).unwrap();
    let model = pipeline.model();
    assert_eq!(model.config().vocab_size, 49152);
    for case in golden() {
        let start = std::time::Instant::now();
        let (mut decoder, logits) = prefill(model, &case.ids, None, Control::default()).unwrap();
        let diff = max_abs_diff(&logits, &case.logits);
        let scale = case.logits.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        eprintln!("{}: {} tokens, max |logit diff| {diff:.3e} (max |logit| {scale:.1})", case.name, case.ids.len());
        assert!(diff < LOGIT_TOL, "{}: max |logit diff| {diff} exceeds {LOGIT_TOL}", case.name);

        // Greedy continuation through the KV cache (the reference re-runs the full prefix each step).
        let mut next = logits;
        let mut greedy = Vec::new();
        for _ in 0..case.greedy.len() {
            let token = next.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
            greedy.push(token);
            next = decoder.step(token).unwrap();
        }
        eprintln!(
            "{}: greedy {:?} in {:.1?}",
            case.name,
            pipeline.tokenizer().decode(&greedy).unwrap(),
            start.elapsed()
        );
        assert_eq!(greedy, case.greedy, "{}", case.name);

        // The same last-position logits from a one-token step after prefilling the rest: every
        // product then has a single activation row, which the CPU backend computes on the quantised
        // blocks directly (the prefill above dequantises them for the dense kernel).
        let (n, ids) = (case.ids.len(), &case.ids);
        let (mut decoder, _) = prefill(model, &ids[..n - 1], None, Control::default()).unwrap();
        let stepped = decoder.step(ids[n - 1]).unwrap();
        let diff = max_abs_diff(&stepped, &case.logits);
        eprintln!("{}: last token as a decoding step, max |logit diff| {diff:.3e}", case.name);
        assert!(diff < LOGIT_TOL, "{}: decoding step: max |logit diff| {diff} exceeds {LOGIT_TOL}", case.name);
    }
}
