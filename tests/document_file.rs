//! Saved documents (`focus::Document::save` / `load`, `Llm::load_document`): a document saved
//! and loaded answers every question with the logits of the document it was saved from, bit for
//! bit (the same caches, the same computation), in every decode mode that condenses chunks and
//! with plain attention, with copied and adapter candidate projections; a file from another
//! model, with other candidate projections, altered or truncated is a typed error.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::focus_golden::golden;
use common::{fixture_dir, load};
use focusllm::focus::{CacheDtype, DecodeMode, Document, FocusConfig};
use focusllm::{argmax, Control, Error, GenerateOptions};
use safetensors::SafeTensors;

/// Greedy steps compared after each question.
const STEPS: usize = 3;

fn tiny(name: &str, adapter: bool) -> focusllm::Pipeline<focusllm::cpu::CpuBackend> {
    let mut p = load(name);
    if adapter {
        common::focus_golden::load_tiny_adapter(&mut p);
    }
    p
}

/// The golden input cut into a 100-id document and three questions.
fn doc_and_tails() -> (Vec<u32>, Vec<Vec<u32>>) {
    let ids = golden("tiny-llama").ids;
    (ids[..100].to_vec(), vec![ids[100..103].to_vec(), ids[103..112].to_vec(), ids[105..127].to_vec()])
}

/// The golden sizes (L = 16, S = 12, Q = 6) with a threshold the document reaches.
fn sizes() -> FocusConfig {
    FocusConfig { threshold: Some(40), chunk_batch: 3, ..golden("tiny-llama").config }
}

/// A fresh path in the test's scratch directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("document_file");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Copies the document file `src` to `dst` with its metadata edited by `edit` and the tensors
/// `drop` names left out.
fn rewrite(src: &Path, dst: &Path, drop: &[&str], edit: impl FnOnce(&mut HashMap<String, String>)) {
    let bytes = std::fs::read(src).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    edit(&mut meta);
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<_> = file.tensors().into_iter().filter(|(name, _)| !drop.contains(&name.as_str())).collect();
    safetensors::serialize_to_file(tensors, Some(meta), dst).unwrap();
}

/// Asks both documents every tail and checks the logits agree bit for bit, after the question
/// and after each greedy step.
fn same_answers<B: focusllm::Backend>(a: &Document<'_, B>, b: &Document<'_, B>, tails: &[Vec<u32>], label: &str) {
    for tail in tails {
        let (mut da, mut la) = a.ask(tail, Control::default()).unwrap();
        let (mut db, mut lb) = b.ask(tail, Control::default()).unwrap();
        for step in 0..=STEPS {
            assert!(la == lb, "{label}, tail of {}, step {step}: logits differ", tail.len());
            if step == STEPS {
                break;
            }
            let t = argmax(&la) as u32;
            la = da.step(t).unwrap();
            lb = db.step(t).unwrap();
        }
    }
}

#[test]
fn a_saved_document_answers_as_the_one_it_was_saved_from() {
    let (doc, tails) = doc_and_tails();
    for adapter in [false, true] {
        let p = tiny("tiny-llama", adapter);
        let configs = [
            FocusConfig { decode: DecodeMode::Exact, ..sizes() },
            FocusConfig { decode: DecodeMode::CachedLocal, ..sizes() },
            FocusConfig { decode: DecodeMode::FrozenMemory, candidates_per_chunk: 2, ..sizes() },
            FocusConfig { decode: DecodeMode::MinEntropy, ..sizes() },
            FocusConfig { share_identical_chunks: true, prefix: focusllm::Prefix::PromptHead(3), ..sizes() },
            // Too short for FocusLLM: the plain cache is saved.
            FocusConfig { threshold: Some(200), ..sizes() },
        ];
        for (i, config) in configs.iter().enumerate() {
            let label = format!("{} adapter={adapter} #{i}", config.decode.name());
            let original = Document::read(p.model(), &doc, config, Control::default()).unwrap();
            let path = scratch(&format!("saved-{adapter}-{i}.safetensors"));
            original.save(&path).unwrap();
            let loaded = Document::load(&path, p.model()).unwrap();
            assert_eq!(loaded.config(), config, "{label}");
            assert_eq!(loaded.tokens(), original.tokens(), "{label}");
            assert_eq!(loaded.chunks(), original.chunks(), "{label}");
            assert_eq!(loaded.has_memory(), i < 5, "{label}");
            same_answers(&original, &loaded, &tails, &label);
        }
    }
}

/// Tolerance of a document saved in f16 against the one it was saved from, on every logit after
/// each question and greedy step: the keys and values are rounded to f16 (relative error at most
/// 2^-11); on the tiny model that moves logits of order 1-5 by at most 1.5e-3.
const F16_TOL: f32 = 5e-3;

#[test]
fn a_document_saved_in_f16_is_half_the_file_and_answers_within_rounding() {
    let (doc, tails) = doc_and_tails();
    let p = tiny("tiny-llama", true);
    let mut report = Vec::new();
    for config in [
        FocusConfig { decode: DecodeMode::CachedLocal, ..sizes() },
        FocusConfig { decode: DecodeMode::Exact, ..sizes() },
        FocusConfig { threshold: Some(200), ..sizes() },
    ] {
        let original = Document::read(p.model(), &doc, &config, Control::default()).unwrap();
        let (full, half) = (scratch("full.safetensors"), scratch("half.safetensors"));
        original.save(&full).unwrap();
        original.save_noted(&half, None, CacheDtype::F16).unwrap();
        let (full_bytes, half_bytes) =
            (std::fs::metadata(&full).unwrap().len(), std::fs::metadata(&half).unwrap().len());
        assert!(half_bytes * 10 < full_bytes * 6, "{half_bytes} bytes in f16 against {full_bytes} in f32");
        let loaded = Document::load(&half, p.model()).unwrap();
        let mut worst = 0.0f32;
        for tail in &tails {
            let (mut da, mut la) = original.ask(tail, Control::default()).unwrap();
            let (mut db, mut lb) = loaded.ask(tail, Control::default()).unwrap();
            for step in 0..=STEPS {
                let d = common::max_abs_diff(&la, &lb);
                worst = worst.max(d);
                assert!(d < F16_TOL, "{}, tail of {}, step {step}: max |diff| {d}", config.decode.name(), tail.len());
                // The same greedy continuation.
                assert_eq!(argmax(&la), argmax(&lb), "{}, tail of {}, step {step}", config.decode.name(), tail.len());
                if step == STEPS {
                    break;
                }
                let t = argmax(&la) as u32;
                la = da.step(t).unwrap();
                lb = db.step(t).unwrap();
            }
        }
        report.push(format!("{} (memory {}): max |diff| {worst:e}", config.decode.name(), loaded.has_memory()));
    }
    println!("{}", report.join("\n"));
}

#[test]
fn a_document_saved_with_other_candidate_projections_is_refused() {
    let (doc, _) = doc_and_tails();
    let copied = tiny("tiny-llama", false);
    let adapted = tiny("tiny-llama", true);
    for (from, to, name) in [(&copied, &adapted, "copied"), (&adapted, &copied, "adapted")] {
        let path = scratch(&format!("projections-{name}.safetensors"));
        Document::read(from.model(), &doc, &sizes(), Control::default()).unwrap().save(&path).unwrap();
        match Document::load(&path, to.model()) {
            Err(Error::DocumentMismatch { path: p, field, .. }) => {
                assert_eq!(p, path);
                assert_eq!(field, "model.candidates");
            }
            other => panic!("{name}: {:?}", other.map(|_| ())),
        }
        // The model it was saved by still loads it.
        Document::load(&path, from.model()).unwrap();
    }
}

#[test]
fn a_document_from_another_model_is_refused() {
    let (doc, _) = doc_and_tails();
    let llama = tiny("tiny-llama", false);
    for other in ["tiny-qwen2", "tiny-mistral"] {
        let p = tiny(other, false);
        let path = scratch(&format!("from-{other}.safetensors"));
        Document::read(p.model(), &doc, &sizes(), Control::default()).unwrap().save(&path).unwrap();
        let err = Document::load(&path, llama.model()).err().expect("refused");
        let message = err.to_string();
        match err {
            Error::DocumentMismatch { field, .. } => assert!(field.starts_with("model."), "{other}: {field}"),
            other => panic!("{other:?}"),
        }
        assert!(message.contains(&*path.to_string_lossy()), "{message}");
    }
}

#[test]
fn an_altered_file_is_refused() {
    let (doc, _) = doc_and_tails();
    let p = tiny("tiny-llama", false);
    let path = scratch("altered-source.safetensors");
    Document::read(p.model(), &doc, &sizes(), Control::default()).unwrap().save(&path).unwrap();
    let load = |dst: &Path| Document::load(dst, p.model()).map(|_| ());
    let set = |key: &'static str, value: &'static str| {
        move |m: &mut HashMap<String, String>| {
            m.insert(key.to_string(), value.to_string());
        }
    };
    // Other sizes than the chunks were read with.
    for (key, value) in [("focus.chunk_size", "10"), ("focus.local_window", "20"), ("focus.threshold", "500")] {
        let dst = scratch(&format!("altered-{key}.safetensors"));
        rewrite(&path, &dst, &[], set(key, value));
        assert!(matches!(load(&dst), Err(Error::DocumentInvalid { .. })), "{key}: {:?}", load(&dst));
    }
    // The model's identity and the format version.
    for (key, value) in [("model.weights", "0123456789abcdef"), ("model.hidden_size", "8"), ("version", "1")] {
        let dst = scratch(&format!("altered-{key}.safetensors"));
        rewrite(&path, &dst, &[], set(key, value));
        match load(&dst) {
            Err(Error::DocumentMismatch { field, found, .. }) => {
                assert_eq!((field.as_str(), found.as_str()), (key, value))
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    // Malformed entries, a missing entry, a missing tensor, a wrong sharing map.
    let dst = scratch("altered-malformed.safetensors");
    for edit in [set("focus.decode", "fast"), set("document.chunks", "[[0"), set("document.kind", "plain")] {
        rewrite(&path, &dst, &[], edit);
        assert!(matches!(load(&dst), Err(Error::DocumentInvalid { .. })), "{:?}", load(&dst));
    }
    rewrite(&path, &dst, &[], |m| {
        m.remove("focus.order");
    });
    assert!(matches!(load(&dst), Err(Error::DocumentInvalid { .. })));
    rewrite(&path, &dst, &[], set("document.shared", "[0,0,0,0,0,0,0,0]"));
    assert!(matches!(load(&dst), Err(Error::DocumentInvalid { .. })));
    rewrite(&path, &dst, &["chunk.3.layer.1.v"], |_| {});
    assert!(matches!(load(&dst), Err(Error::DocumentInvalid { .. })));
    // A model checkpoint is no document.
    assert!(matches!(load(&fixture_dir("tiny-llama").join("model.safetensors")), Err(Error::DocumentInvalid { .. })));
}

#[test]
fn a_truncated_or_missing_file_is_a_typed_error() {
    let (doc, _) = doc_and_tails();
    let p = tiny("tiny-llama", true);
    let path = scratch("truncated-source.safetensors");
    Document::read(p.model(), &doc, &sizes(), Control::default()).unwrap().save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let dst = scratch("truncated.safetensors");
    for len in [0, 4, 9, 200, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&dst, &bytes[..len]).unwrap();
        match Document::load(&dst, p.model()) {
            Err(Error::Safetensors { path, .. }) => assert_eq!(path, dst),
            other => panic!("{len} bytes: {:?}", other.map(|_| ())),
        }
    }
    let document = Document::read(p.model(), &doc, &sizes(), Control::default()).unwrap();
    let unwritable = scratch("no-such-dir").join("document.safetensors");
    assert!(matches!(document.save(&unwritable), Err(Error::Io { path, .. }) if path == unwritable));
    let missing = scratch("no-such-document.safetensors");
    assert!(matches!(Document::load(&missing, p.model()), Err(Error::Io { .. })));
}

#[test]
fn the_facade_saves_and_loads_text_documents() {
    let mut llm = focusllm::Llm::load(fixture_dir("tiny-llama"), focusllm::Device::Cpu { threads: Some(2) }).unwrap();
    let plain = focusllm::Llm::load(fixture_dir("tiny-llama"), focusllm::Device::Cpu { threads: Some(2) }).unwrap();
    llm.load_adapter(fixture_dir("focus").join("tiny-llama-adapter.safetensors")).unwrap();
    let config = FocusConfig { decode: DecodeMode::CachedLocal, ..sizes() };
    let options = GenerateOptions { max_tokens: 6, stop_at_eos: false, ..Default::default() };
    let answer = |d: &focusllm::Document<'_>, q: &str| -> Vec<u32> {
        d.ask(q, &options).unwrap().map(|t| t.unwrap().id).collect()
    };
    let text = "one two three four five six seven eight nine ten ".repeat(12);
    let document = llm.read_text(&text, &config, Control::default()).unwrap();
    let path = scratch("facade-text.safetensors");
    document.save(&path).unwrap();
    let loaded = llm.load_document(&path).unwrap();
    assert_eq!(loaded.tokens(), document.tokens());
    assert_eq!(loaded.chunks(), document.chunks());
    assert_eq!(loaded.focus(), &config);
    for question in ["which number?", "what comes after seven?", "and after nine?"] {
        assert_eq!(answer(&loaded, question), answer(&document, question), "{question}");
    }
    // A document read from ids is asked with ids after loading too.
    let (doc, tails) = doc_and_tails();
    let by_ids = llm.read(&doc, &config, Control::default()).unwrap();
    let path = scratch("facade-ids.safetensors");
    by_ids.save(&path).unwrap();
    let loaded = llm.load_document(&path).unwrap();
    let ids = |d: &focusllm::Document<'_>, t: &[u32]| -> Vec<u32> {
        d.ask_ids(t, &options).unwrap().map(|t| t.unwrap().id).collect()
    };
    assert_eq!(ids(&loaded, &tails[1]), ids(&by_ids, &tails[1]));
    assert!(matches!(loaded.ask("what?", &options), Err(Error::InvalidOption { .. })));
    // The model without the adapter refuses it.
    assert!(matches!(plain.load_document(&path), Err(Error::DocumentMismatch { .. })));
}
